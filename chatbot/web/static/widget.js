/* Kefu chat widget: one <script> tag, no build step.
 *
 *   <script src="https://kefu.example.com/widget.js" data-site-key="sk_..." async
 *           data-title="Lumen & Leaf" data-greeting="Hi! Ask me anything." data-color="#2f6f4f"
 *           data-lang="en" data-position="right"></script>
 *
 * A bubble opens a panel in a shadow root (the host page's styles do not reach it). Answers stream
 * with their sources, thumbs up/down, and "talk to a person". The conversation is kept across
 * page loads of the same site (localStorage). The visitor can download everything stored of their
 * chats (JSON) and delete it (a second click confirms). Every text is set with textContent, never
 * as HTML.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.__kefuWidget) return;
  window.__kefuWidget = true;
  var base = new URL(script.src).origin;
  var cfg = {
    siteKey: script.dataset.siteKey || "",
    title: script.dataset.title || "Customer service",
    greeting: script.dataset.greeting || "",
    color: /^#[0-9a-fA-F]{3,8}$/.test(script.dataset.color || "") ? script.dataset.color : "#2f6f4f",
    lang: script.dataset.lang || (navigator.language || "en").slice(0, 2),
    position: script.dataset.position === "left" ? "left" : "right",
  };
  var zh = cfg.lang === "zh";
  var T = {
    open: zh ? "打开客服对话" : "Open chat", close: zh ? "关闭" : "Close", send: zh ? "发送" : "Send",
    placeholder: zh ? "请输入您的问题…" : "Type your question…", person: zh ? "转人工" : "Talk to a person",
    sources: zh ? "来源" : "Sources", up: zh ? "有帮助" : "Helpful", down: zh ? "没帮助" : "Not helpful",
    agent: zh ? "客服" : "Agent", failed: zh ? "出错了，请稍后再试。" : "Something went wrong; please try again.",
    thanks: zh ? "谢谢反馈！" : "Thanks for the feedback!", why: zh ? "哪里不对？（可选）" : "What was wrong? (optional)",
    download: zh ? "下载我的对话" : "Download my chat", erase: zh ? "删除我的对话" : "Delete my chat",
    confirm: zh ? "确定删除？再点一次" : "Delete everything? Click again",
    erased: zh ? "您的对话已从我们的系统中删除。" : "Your chat was deleted from our systems.",
  };
  var storeKey = "kefu:" + cfg.siteKey;
  var state = load();
  var lastId = 0;
  var polling = null;
  var busy = false;

  function load() {
    try { return JSON.parse(localStorage.getItem(storeKey)) || {}; } catch (e) { return {}; }
  }
  function save() {
    try { localStorage.setItem(storeKey, JSON.stringify(state)); } catch (e) { /* private mode: this page only */ }
  }

  // --- the shadow DOM -------------------------------------------------------------------------
  var host = document.createElement("div");
  host.setAttribute("data-kefu", "");
  document.body.appendChild(host);
  var root = host.attachShadow({ mode: "open" });
  var style = document.createElement("style");
  style.textContent = [
    ":host{all:initial}",
    "*{box-sizing:border-box;font-family:system-ui,-apple-system,'Segoe UI',Roboto,'PingFang SC','Noto Sans CJK SC',sans-serif}",
    ".bubble{position:fixed;bottom:20px;" + cfg.position + ":20px;width:56px;height:56px;border-radius:50%;border:0;background:" + cfg.color + ";color:#fff;display:flex;align-items:center;justify-content:center;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);z-index:2147483646}",
    ".bubble:focus-visible,button:focus-visible,textarea:focus-visible{outline:3px solid #1a73e8;outline-offset:2px}",
    ".panel{position:fixed;bottom:88px;" + cfg.position + ":20px;width:min(380px,calc(100vw - 16px));height:min(600px,calc(100vh - 110px));background:#fff;color:#1f2328;border-radius:14px;box-shadow:0 8px 30px rgba(0,0,0,.3);display:flex;flex-direction:column;overflow:hidden;z-index:2147483647}",
    ".panel[hidden]{display:none}",
    "@media (max-width:480px){.panel{inset:0;width:100vw;height:100vh;border-radius:0;bottom:0}}",
    "header{background:" + cfg.color + ";color:#fff;padding:12px 14px;display:flex;align-items:center;justify-content:space-between;font-weight:600;font-size:16px}",
    "header button{background:transparent;border:0;color:#fff;font-size:22px;cursor:pointer;line-height:1}",
    ".log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:8px;font-size:14px;line-height:1.45}",
    ".msg{max-width:85%;padding:8px 11px;border-radius:12px;white-space:pre-wrap;word-wrap:break-word}",
    ".user{align-self:flex-end;background:" + cfg.color + ";color:#fff}",
    ".assistant,.agent,.note{align-self:flex-start;background:#f0f2f4}",
    ".agent{background:#fff4d6;border:1px solid #f0d48a}",
    ".note{background:transparent;color:#57606a;font-size:12px;align-self:center}",
    ".who{display:block;font-size:11px;font-weight:600;color:#8a6d00;margin-bottom:2px}",
    ".sources{margin:6px 0 0;padding:6px 0 0 16px;border-top:1px solid #d0d7de;font-size:12px;color:#57606a}",
    ".quote{margin:0 0 6px;padding:2px 0 2px 8px;border-left:3px solid #8c959f;font-style:italic;white-space:pre-wrap}",
    ".excerpt{margin:3px 0 0;color:#24292f}.excerpt mark{background:#fff3b0;color:inherit}",
    ".thumbs{display:flex;gap:6px;margin-top:4px}",
    ".thumbs button{border:1px solid #d0d7de;background:#fff;border-radius:6px;cursor:pointer;font-size:13px;padding:1px 7px}",
    ".thumbs button[aria-pressed=true]{background:#ddf4e4;border-color:#2f6f4f}",
    ".why{display:flex;gap:6px;margin-top:4px}.why input{flex:1;border:1px solid #d0d7de;border-radius:6px;font-size:13px;padding:2px 6px}",
    ".why button{border:1px solid #d0d7de;background:#fff;border-radius:6px;cursor:pointer;font-size:13px;padding:1px 7px}",
    "form{display:flex;gap:6px;padding:8px;border-top:1px solid #d0d7de}",
    "textarea{flex:1;resize:none;border:1px solid #d0d7de;border-radius:8px;padding:8px;font-size:14px;min-height:40px;max-height:120px}",
    ".send{background:" + cfg.color + ";color:#fff;border:0;border-radius:8px;padding:0 14px;cursor:pointer;font-size:14px}",
    ".mine{display:flex;justify-content:center;gap:14px;margin:0 8px 6px}",
    ".mine button{background:none;border:0;color:#57606a;font-size:12px;text-decoration:underline;cursor:pointer;padding:2px}",
    ".mine button.armed{color:#b42318;font-weight:600}",
    ".person{margin:0 8px 8px;background:#fff;border:1px solid " + cfg.color + ";color:" + cfg.color + ";border-radius:8px;padding:6px;cursor:pointer;font-size:13px}",
  ].join("\n");
  root.appendChild(style);

  var bubble = el("button", "bubble");
  bubble.type = "button";
  bubble.appendChild(chatIcon());
  bubble.setAttribute("aria-label", T.open);
  bubble.setAttribute("aria-expanded", "false");
  var panel = el("section", "panel");
  panel.hidden = true;
  panel.setAttribute("role", "dialog");
  panel.setAttribute("aria-label", cfg.title);
  var header = el("header");
  var heading = el("span", "", cfg.title);
  var closer = el("button", "", "×");
  closer.type = "button";
  closer.setAttribute("aria-label", T.close);
  header.append(heading, closer);
  var log = el("div", "log");
  log.setAttribute("role", "log");
  log.setAttribute("aria-live", "polite");
  var form = el("form");
  var box = el("textarea");
  box.rows = 1;
  box.placeholder = T.placeholder;
  box.setAttribute("aria-label", T.placeholder);
  var send = el("button", "send", T.send);
  send.type = "submit";
  form.append(box, send);
  var person = el("button", "person", T.person);
  person.type = "button";
  var mine = el("div", "mine");
  var download = el("button", "download", T.download);
  download.type = "button";
  var erase = el("button", "erase", T.erase);
  erase.type = "button";
  mine.append(download, erase);
  panel.append(header, log, form, person, mine);
  root.append(bubble, panel);

  function chatIcon() {  // drawn, not an emoji: no font needed
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "28");
    svg.setAttribute("height", "28");
    svg.setAttribute("aria-hidden", "true");
    var path = document.createElementNS(ns, "path");
    path.setAttribute("fill", "currentColor");
    path.setAttribute("d", "M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2zm3 6.5a1.5 1.5 0 1 0 0 .01zm5 0a1.5 1.5 0 1 0 0 .01zm5 0a1.5 1.5 0 1 0 0 .01z");
    svg.appendChild(path);
    return svg;
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text) node.textContent = text;
    return node;
  }

  // --- talking to the server -------------------------------------------------------------------
  function api(path, options, retried) {
    options = options || {};
    var headers = { "Content-Type": "application/json" };
    if (state.token) headers.Authorization = "Bearer " + state.token;
    return fetch(base + "/api" + path, { method: options.method || "GET", headers: headers, body: options.body ? JSON.stringify(options.body) : undefined })
      .then(function (response) {
        if (response.status === 401 && !retried && path !== "/session") {
          state.token = null;
          return session().then(function () { return api(path, options, true); });
        }
        if (!response.ok) {
          return response.json().catch(function () { return {}; }).then(function (body) {
            var error = new Error(body.error || T.failed);
            error.status = response.status;
            throw error;
          });
        }
        return response;
      });
  }

  function session() {
    if (state.token && state.expires > Date.now() / 1000 + 60) return Promise.resolve();
    return api("/session", { method: "POST", body: { site_key: cfg.siteKey, visitor: state.visitor || null } })
      .then(function (r) { return r.json(); })
      .then(function (body) {
        state.token = body.token;
        state.visitor = body.visitor;
        state.expires = Date.now() / 1000 + body.expires_in;
        save();
      });
  }

  function conversation() {
    if (state.conversation) {
      return api("/conversations/" + state.conversation).then(function (r) { return r.json(); }).then(function (body) {
        body.messages.forEach(render);
        follow(body.status);
      }).catch(function (error) {
        if (error.status !== 404) throw error;
        state.conversation = null;
        return conversation();
      });
    }
    return api("/conversations", { method: "POST" }).then(function (r) { return r.json(); }).then(function (body) {
      state.conversation = body.id;
      save();
      if (cfg.greeting) note(cfg.greeting);
    });
  }

  var ready = null;
  function start() {
    if (!ready) ready = session().then(conversation).catch(function (error) { ready = null; note(error.message); });
    return ready;
  }

  // --- rendering (text only) -------------------------------------------------------------------
  function note(text) {
    var node = el("div", "msg note", text);
    log.appendChild(node);
    scroll();
    return node;
  }

  function render(message) {
    lastId = Math.max(lastId, message.id || 0);
    var node = el("div", "msg " + message.role);
    if (message.role === "agent") node.appendChild(el("span", "who", T.agent));
    var text = el("span", "text", message.content);
    node.appendChild(text);
    log.appendChild(node);
    if (message.role === "assistant") finish(node, message.id, message.sources || [], message.mode);
    scroll();
    return node;
  }

  // A generated answer opens with a quote of its source: shown as a quote, and its words marked in
  // the source listed below it.
  function showQuote(node, sources) {
    var source = sources.filter(function (s) { return s.quote && s.text; })[0];
    var textNode = node.querySelector(".text");
    if (!source || !textNode) return null;
    var sentence = source.text.slice(source.quote.start, source.quote.end);
    var content = textNode.textContent, cut = content.indexOf("\n\n");
    var first = cut < 0 ? content : content.slice(0, cut);
    if (first.indexOf(sentence) < 0) return null;
    var quote = el("blockquote", "quote", first);
    node.insertBefore(quote, textNode);
    textNode.textContent = cut < 0 ? "" : content.slice(cut + 2);
    return source;
  }

  function excerpt(source) {
    var start = source.quote.start, end = source.quote.end, text = source.text;
    var box = el("div", "excerpt");
    box.appendChild(document.createTextNode((start > 160 ? "…" : "") + text.slice(Math.max(0, start - 160), start)));
    box.appendChild(el("mark", "", text.slice(start, end)));
    box.appendChild(document.createTextNode(text.slice(end, end + 160) + (end + 160 < text.length ? "…" : "")));
    return box;
  }

  function finish(node, messageId, sources, mode) {
    var quoted = showQuote(node, sources);
    if (sources.length) {
      var list = el("ol", "sources");
      list.setAttribute("aria-label", T.sources);
      sources.forEach(function (s) {
        var title = s.title + (s.heading && s.heading !== s.title ? " — " + s.heading : "") + " · " + s.source + (s.page ? " p. " + s.page : "");
        var item = el("li", "", title);
        if (s === quoted) item.appendChild(excerpt(s));
        list.appendChild(item);
      });
      node.appendChild(list);
    }
    if (!messageId || mode === "handoff" || mode === "refused") return;  // only answers are rated
    var thumbs = el("div", "thumbs");
    [["up", T.up], ["down", T.down]].forEach(function (t) {
      var b = el("button", "", (t[0] === "up" ? "+ " : "− ") + t[1]);
      b.type = "button";
      b.setAttribute("aria-pressed", "false");
      b.addEventListener("click", function () {
        api("/conversations/" + state.conversation + "/feedback", { method: "POST", body: { message_id: messageId, rating: t[0] } })
          .then(function () {
            thumbs.querySelectorAll("button").forEach(function (x) { x.setAttribute("aria-pressed", "false"); });
            b.setAttribute("aria-pressed", "true");
            b.title = T.thanks;
            if (t[0] === "down" && !node.querySelector(".why")) askWhy(node, messageId);
          })
          .catch(function (error) { note(error.message); });
      });
      thumbs.appendChild(b);
    });
    node.appendChild(thumbs);
    scroll();
  }

  // After a thumbs-down, an optional reason: what the business reads among its knowledge gaps.
  function askWhy(node, messageId) {
    var why = el("form", "why");
    var input = el("input", "");
    input.type = "text";
    input.maxLength = 500;
    input.placeholder = T.why;
    input.setAttribute("aria-label", T.why);
    var send = el("button", "", T.send);
    send.type = "submit";
    why.appendChild(input);
    why.appendChild(send);
    why.addEventListener("submit", function (event) {
      event.preventDefault();
      if (!input.value.trim()) return;
      api("/conversations/" + state.conversation + "/feedback", { method: "POST", body: { message_id: messageId, rating: "down", comment: input.value } })
        .then(function () { node.replaceChild(el("div", "why", T.thanks), why); })
        .catch(function (error) { note(error.message); });
    });
    node.appendChild(why);
    scroll();
  }

  function scroll() { log.scrollTop = log.scrollHeight; }

  // --- sending, streaming, handoff -------------------------------------------------------------
  function ask(text) {  // on a refusal the text goes back into the box: nothing typed is lost
    if (busy || !text.trim()) return;
    busy = true;
    send.disabled = true;
    var mine = render({ role: "user", content: text });
    start().then(function () {
      return api("/conversations/" + state.conversation + "/messages", { method: "POST", body: { content: text } });
    }).then(function (response) {
      var node = null, textNode = null;
      return readEvents(response, function (name, data) {
        if (name === "token") {
          if (!node) { node = render({ role: "assistant", content: "" }); textNode = node.querySelector(".text"); }
          textNode.textContent += data.text;
          scroll();
        } else if (name === "done") {
          lastId = Math.max(lastId, data.message_id || 0, data.question_id || 0);
          if (node) finish(node, data.message_id, data.sources || [], data.mode);
          if (data.offer_handoff) person.focus();
          if (data.status === "handoff") follow("handoff");
        } else if (name === "queued") {
          lastId = Math.max(lastId, data.message_id || 0);
          follow("handoff");
        }
      });
    }).catch(function (error) {
      if (error.status) mine.remove();  // refused (too long, too fast): not sent, so not shown as sent
      note(error.message);
      if (!box.value) box.value = text;
    }).then(function () {
      busy = false;
      send.disabled = false;
    });
  }

  function readEvents(response, onEvent) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) return;
        buffer += decoder.decode(chunk.value, { stream: true });
        var parts = buffer.split("\n\n");
        buffer = parts.pop();
        parts.forEach(function (part) {
          var name = "message", data = "";
          part.split("\n").forEach(function (line) {
            if (line.indexOf("event: ") === 0) name = line.slice(7);
            else if (line.indexOf("data: ") === 0) data += line.slice(6);
          });
          if (data) onEvent(name, JSON.parse(data));
        });
        return pump();
      });
    }
    return pump();
  }

  function follow(status) {
    if (status !== "handoff") { stopPolling(); return; }
    if (!polling) polling = setInterval(poll, 2500);
  }
  function stopPolling() { if (polling) { clearInterval(polling); polling = null; } }

  function poll() {
    api("/conversations/" + state.conversation + "?after=" + lastId).then(function (r) { return r.json(); }).then(function (body) {
      body.messages.forEach(function (m) { if (m.role !== "user") render(m); else lastId = Math.max(lastId, m.id); });
      follow(body.status);
    }).catch(function () { /* try again on the next tick */ });
  }

  // --- events ----------------------------------------------------------------------------------
  function open() {
    panel.hidden = false;
    bubble.setAttribute("aria-expanded", "true");
    start();
    box.focus();
  }
  function close() {
    panel.hidden = true;
    bubble.setAttribute("aria-expanded", "false");
    bubble.focus();
  }
  bubble.addEventListener("click", function () { panel.hidden ? open() : close(); });
  closer.addEventListener("click", close);
  panel.addEventListener("keydown", function (e) { if (e.key === "Escape") close(); });
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var text = box.value;
    box.value = "";
    ask(text);
  });
  box.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
  });
  person.addEventListener("click", function () {
    start().then(function () {
      return api("/conversations/" + state.conversation + "/handoff", { method: "POST" });
    }).then(function () { poll(); follow("handoff"); }).catch(function (error) { note(error.message); });
  });
  download.addEventListener("click", function () {
    session().then(function () { return api("/me/export"); }).then(function (r) { return r.blob(); }).then(function (blob) {
      var link = el("a");
      link.href = URL.createObjectURL(blob);
      link.download = "my-chat.json";
      root.appendChild(link);
      link.click();
      link.remove();
      setTimeout(function () { URL.revokeObjectURL(link.href); }, 10000);
    }).catch(function (error) { note(error.message); });
  });
  var disarm = null;
  erase.addEventListener("click", function () {
    if (!erase.classList.contains("armed")) {  // the first click asks, the second deletes
      erase.classList.add("armed");
      erase.textContent = T.confirm;
      disarm = setTimeout(function () { erase.classList.remove("armed"); erase.textContent = T.erase; }, 5000);
      return;
    }
    clearTimeout(disarm);
    erase.classList.remove("armed");
    erase.textContent = T.erase;
    session().then(function () { return api("/me", { method: "DELETE" }); }).then(function () {
      stopPolling();
      state.conversation = null;
      save();
      ready = null;
      lastId = 0;
      while (log.firstChild) log.removeChild(log.firstChild);
      note(T.erased);
    }).catch(function (error) { note(error.message); });
  });
  if (state.conversation) start();  // a returning visitor: the conversation is there when the panel opens
})();
