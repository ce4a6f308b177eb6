"""Personal data for the privacy tests: three that must be masked everywhere, two near misses that
must be left as they are."""

VALID_ID = "11010519491231002X"  # a Chinese resident ID whose GB 11643 check digit (X) holds
WRONG_ID = "110105194912310021"  # the same with a wrong check digit
UNIONPAY = "6222021234567890128"  # 19 digits, Luhn holds
NOT_A_CARD = "6222021234567890127"  # Luhn fails
MOBILE = "13800138000"
PII_MESSAGE = f"我的身份证{VALID_ID}，卡号{UNIONPAY}，电话+86{MOBILE}；旧卡{NOT_A_CARD}，旧身份证{WRONG_ID}"
SECRETS = (VALID_ID, UNIONPAY, MOBILE)
KEPT = (NOT_A_CARD, WRONG_ID)
