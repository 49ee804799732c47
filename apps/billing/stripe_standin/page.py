"""The stand-in's checkout page: plain HTML, one form, no script (it is served by the stand-in,
not by our site). It says plainly that it is a test page and which card numbers it takes."""

from html import escape
from typing import Any

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;"
    "color:#1a1f36}h1{font-size:1.3rem}.amount{font-size:2rem;font-weight:600;margin:.5rem 0}"
    ".test{background:#fff4e5;border:1px solid #f5a623;padding:.5rem .75rem;border-radius:6px}"
    "label{display:block;margin-top:1rem;font-size:.9rem}input{width:100%;padding:.5rem;"
    "font-size:1rem;box-sizing:border-box}button{margin-top:1.25rem;width:100%;padding:.7rem;"
    "font-size:1rem;background:#635bff;color:#fff;border:0;border-radius:6px}"
    ".error{color:#df1b41;margin-top:1rem}.paid{color:#0a7d3e;font-weight:600}"
)


def _layout(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        # No favicon request (the stand-in serves none).
        "<link rel='icon' href='data:,'>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def checkout(session: dict[str, Any], item_names: list[str], *, error: str | None) -> str:
    cents = int(session.get("amount_total") or 0)
    amount = f"${cents // 100}.{cents % 100:02d}"
    items = "".join(f"<li>{escape(name)}</li>" for name in item_names if name)
    head = (
        "<p class='test'>Test mode: this is the local Stripe Checkout stand-in of the demo. "
        "No money moves. Card <b>4242 4242 4242 4242</b> pays; "
        "<b>4000 0000 0000 0002</b> is declined.</p>"
        f"<h1>Pay GPU Cloud</h1><p class='amount'>{amount}</p>"
        f"<ul>{items}</ul>"
        f"<p>{escape(str(session.get('customer_email') or ''))}</p>"
    )
    if session.get("status") == "complete":
        done = escape(
            str(session.get("success_url") or "").replace(
                "{CHECKOUT_SESSION_ID}", str(session["id"])
            )
        )
        back = f" <a href='{done}'>Back to GPU Cloud</a>" if done else ""
        return _layout("Paid", head + f"<p class='paid'>Paid.</p>{back}")
    problem = f"<p class='error' role='alert'>{escape(error)}</p>" if error else ""
    cancel = escape(str(session.get("cancel_url") or ""))
    form = (
        "<form method='post'>"
        "<label for='card_number'>Card number</label>"
        "<input id='card_number' name='card_number' inputmode='numeric' autocomplete='cc-number'"
        " placeholder='4242 4242 4242 4242' required>"
        "<label for='expiry'>Expiry (MM / YY)</label>"
        "<input id='expiry' name='expiry' placeholder='12 / 34' autocomplete='cc-exp'>"
        "<label for='cvc'>CVC</label>"
        "<input id='cvc' name='cvc' placeholder='123' autocomplete='cc-csc'>"
        f"<button type='submit'>Pay {amount}</button></form>{problem}"
        + (f"<p><a href='{cancel}'>Cancel</a></p>" if cancel else "")
    )
    return _layout(f"Pay {amount}", head + form)


def not_found() -> str:
    return _layout("Not found", "<h1>This checkout page does not exist.</h1>")
