"""The abstain calibration for real (packaged embedders, the shipped knowledge, the shipped
off-topic probes): each index version is calibrated on its own knowledge. Adding documents on
another subject changes it, so that subject is answered; removing them restores it exactly."""

from __future__ import annotations

import pytest

from chatbot.calibration import resolve
from chatbot.config import load_settings
from chatbot.dialogue import decide
from chatbot.embeddings import make_embeddings
from chatbot.kb import KnowledgeBase, Upload
from chatbot.retrieval import Retriever
from tests.integration.conftest import clean_env

pytestmark = pytest.mark.slow
GROOMING = [
    ("How often should my dog be groomed?", "Most coats need a full groom every 6 to 8 weeks; double coats every 10 to 12 weeks."),
    ("Do you trim cats' claws?", "Yes, claw trims for cats take 15 minutes and cost EUR 12, no appointment needed."),
    ("Can I stay with my dog during the groom?", "Owners may stay for puppies under 6 months; older dogs are calmer without their owner."),
    ("What vaccinations does my dog need before a visit?", "Rabies and DHPP must be up to date; bring the vaccination booklet to the first visit."),
    ("Do you groom aggressive dogs?", "We groom nervous dogs in a quiet room; a dog that bites is groomed only with a muzzle and its owner's consent."),
    ("How long does a full groom take?", "A small dog takes about 90 minutes, a large double-coated dog up to 3 hours."),
    ("Do you use flea shampoo?", "A flea and tick bath is EUR 8 extra and uses a vet-approved shampoo."),
    ("What if my dog has matted fur?", "Heavily matted coats are shaved short for the dog's comfort; dematting costs EUR 15 per 15 minutes."),
    ("Do you offer teeth cleaning for pets?", "We brush teeth with enzyme paste for EUR 6; scaling under anaesthesia is done by a vet only."),
    ("Can you pick up my dog from home?", "Our pet taxi collects within 5 km for EUR 10 each way."),
    ("What breeds do you hand-strip?", "Terriers and schnauzers are hand-stripped on request at EUR 40 an hour."),
    ("Is there a discount for several pets?", "The second pet of the same household groomed on the same day gets 20% off."),
]
PET_QUESTION = "Do you cut the nails of cats?"


def _csv(rows) -> bytes:
    return ("question,answer\n" + "".join(f'"{q}","{a}"\n' for q, a in rows)).encode()


def _decision(kb: KnowledgeBase, embedder, settings, question: str) -> str:
    index = kb.live()
    retrieval = Retriever(index, embedder, settings.retrieval).retrieve(question)
    return decide(retrieval, resolve(settings.retrieval, index.manifest["calibration"]))


def test_adding_documents_on_another_subject_changes_the_calibration_and_removing_them_restores_it(tmp_path):
    settings = load_settings("default", environ=clean_env(), overrides={"data_dir": str(tmp_path / "data")})
    embedder = make_embeddings(settings.embeddings, settings.model_cache_dir)
    kb = KnowledgeBase(settings, embedder)
    before = kb.open().manifest["calibration"]
    assert set(before["answer_threshold"]) == {"en", "zh"} and before["languages"]["en"]["in_scope_probes"] > 50
    assert before["languages"]["en"]["off_topic_abstained"] >= 0.85 and before["languages"]["en"]["in_scope_answered"] >= 0.8
    assert "online_shopping" in before["languages"]["en"]["own_domains"]  # the shop's own subject is not off-topic
    assert _decision(kb, embedder, settings, PET_QUESTION) == "abstain"

    report = kb.add([Upload("grooming-faq.csv", _csv(GROOMING))])
    added = report.index.manifest["calibration"]
    assert added["answer_threshold"] != before["answer_threshold"]
    assert added["languages"]["en"]["in_scope_probes"] == before["languages"]["en"]["in_scope_probes"] + len(GROOMING)
    assert _decision(kb, embedder, settings, PET_QUESTION) in ("faq", "generate")

    restored = kb.remove(report.added[0]["id"]).index.manifest["calibration"]
    assert restored["answer_threshold"] == before["answer_threshold"] and restored["languages"] == before["languages"]
    assert _decision(kb, embedder, settings, PET_QUESTION) == "abstain"
