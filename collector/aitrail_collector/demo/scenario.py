"""The demo's scenario: a support-ticket triage bot that uses the real SDK.

Everything goes the way it would in production: the bot is instrumented with
``aitrail`` and OpenTelemetry, its records travel over gRPC to a collector
started in this process, and the summary is read back from the sealed ledger
(and verified) rather than from the bot's own counters. The scenario is
deterministic for a given ``--seed`` and never sleeps: reviewer time is
simulated and passed as ``time_spent_ms``.
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Callable, Iterator, Optional

from opentelemetry.trace import Tracer

import aitrail

SERVICE = "ticket-triage"
SERVICE_VERSION = "2.7.0"
# Fixed so that redaction tokens are the same on every run (same customer, same
# token); a real deployment keeps its key in a secret store.
DEMO_REDACTION_KEY = "aitrail-demo-redaction-key--not-for-production"
LOW_CONFIDENCE = 0.6  # below this a senior reviewer looks at the ticket too

# ------------------------------------------------------------------ data tables

REVIEWERS = ("rev-alice", "rev-bob", "rev-carol", "rev-dave", "rev-erin", "rev-frank")
SENIORS = ("rev-grace", "rev-heidi")


@dataclasses.dataclass(frozen=True)
class Variant:
    """A model + prompt combination in the A/B rollout; the rates drive the simulation."""
    provider: str
    model: str
    model_version: str
    prompt_version: str
    temperature: float
    wrong_category_rate: float
    bad_reply_rate: float  # right category, but a reply a reviewer must not send


VARIANTS = (
    Variant("openai", "gpt-4o-mini", "2024-07-18", "v3", 0.3, 0.20, 0.10),
    Variant("openai", "gpt-4.1-mini", "2025-04-14", "v4", 0.0, 0.07, 0.04),
)
PROMPT_TEMPLATE_ID = "triage"

PROMPTS = {
    "v3": ("You are a support triage assistant for Northwind Outfitters.\n"
           "Classify the ticket as one of: billing, refund, login, shipping, bug_report, "
           "privacy_request. Give a priority P1-P4 and a short reply to the customer.\n"
           "Answer in JSON.\n\n"
           "Channel: {channel}\nCustomer tier: {tier}\nTicket {ticket_id}:\n{text}\n"),
    "v4": ("You are Northwind Outfitters' support triage assistant. Follow policy "
           "POL-TRIAGE-4.2.\nCategories: billing, refund, login, shipping, bug_report, "
           "privacy_request.\nPriorities: P1 (outage, security) to P4 (question).\n"
           "Never promise refunds, credits or deadlines; say what happens next.\n"
           "Return JSON with keys category, priority, suggested_reply.\n\n"
           "<ticket id=\"{ticket_id}\" channel=\"{channel}\" tier=\"{tier}\">\n{text}\n"
           "</ticket>\n"),
}

# Ticket texts by category. Some carry PII on purpose (e-mail addresses, phone
# numbers, a Luhn-valid test card, an SSN) to show the SDK redacting it.
TICKETS = {
    "billing": (
        "Hi, I was charged {amount} twice on {date} for my {plan} subscription. Can you check? "
        "My account email is {email}.",
        "Our invoice INV-{invoice} lists {seats} seats but we only have {seats_used} users. "
        "Please correct it and send the new invoice to {email}.",
        "My card ending {last4} was declined at renewal but the money still left my account. "
        "Call me at {phone} if you need to.",
        "I want to change my payment card to {card}, expiry 12/27. The old one expires this "
        "month.",
    ),
    "refund": (
        "I returned the {product} (order {order}) three weeks ago and still have not received "
        "my refund of {amount}.",
        "Please refund order {order}. The {product} arrived broken. You can reach me on {phone}.",
        "I cancelled within the 14-day window but was still billed {amount}. Please put the "
        "money back on my card {card}.",
    ),
    "login": (
        "I can't log in since the password reset. The reset link sent to {email} says it has "
        "expired.",
        "Two-factor codes still go to my old number {phone}, so I can't get into my account.",
        "Locked out after too many attempts. Username {username}. Please unlock it.",
    ),
    "shipping": (
        "Order {order} was supposed to arrive on {date} but tracking hasn't moved in 5 days.",
        "The {product} was delivered to the wrong address. Please contact me at {email} or "
        "{phone}.",
        "Can I change the delivery address for order {order}? I moved last week.",
    ),
    "bug_report": (
        "The mobile app crashes when I open Order History (app {app_version}, Android 14).",
        "Export to CSV gives an empty file since yesterday's update.",
        "Checkout shows an error 500 when I apply the discount code {promo}.",
    ),
    "privacy_request": (
        "Please delete my account and all data you hold about me (GDPR Art. 17). Account "
        "email: {email}.",
        "I request a copy of all personal data you store about me (GDPR Art. 15). You can "
        "verify me on {phone}.",
        "Your agent asked for my SSN to verify me, so here it is: {ssn}. Please close my "
        "account.",
    ),
}
CATEGORIES = tuple(TICKETS)
BASE_PRIORITY = {"billing": 3, "refund": 3, "login": 2, "shipping": 3, "bug_report": 2,
                 "privacy_request": 2}
# Tickets where a reviewer may open the customer's CRM record to check who is asking.
ACCOUNT_CATEGORIES = ("billing", "refund", "login", "privacy_request")
# What a model tends to confuse each category with.
CONFUSED_WITH = {"billing": "refund", "refund": "billing", "login": "bug_report",
                 "shipping": "refund", "bug_report": "login", "privacy_request": "login"}

GOOD_REPLIES = {
    "billing": "Hi {first}, thanks for flagging this. Our billing team will review the charge "
               "and we will follow up by email within 2 business days.",
    "refund": "Hi {first}, sorry for the wait. We are checking the refund for your order and "
              "will confirm the status by email within 2 business days.",
    "login": "Hi {first}, we have sent a new password reset link to {email}. It is valid for "
             "30 minutes.",
    "shipping": "Hi {first}, we have opened a trace with the carrier and will update you within "
                "48 hours.",
    "bug_report": "Hi {first}, thanks for the report. Our engineers are looking into it "
                  "(ref BUG-{bug}); we will let you know when a fix ships.",
    "privacy_request": "Hi {first}, we have received your privacy request and will complete it "
                       "within 30 days, as GDPR requires. Confirmation will go to {email}.",
}
# A plausible reply no reviewer may send: it promises what policy does not allow.
BAD_REPLY = ("Hi {first}, I have refunded {amount} to your card and added a 20% discount to "
             "your next order. Sorry again!")

CUSTOMERS = (("Maria", "Gonzalez"), ("Liam", "O'Brien"), ("Aisha", "Khan"), ("Jonas", "Weber"),
             ("Yuki", "Tanaka"), ("Chloe", "Martin"), ("Kwame", "Mensah"), ("Sofia", "Rossi"),
             ("Noah", "Andersson"), ("Priya", "Sharma"), ("Mateo", "Silva"), ("Emma", "Dubois"))
PHONES = ("+1 415 555 0134", "(212) 555-0187", "+44 20 7946 0958", "+1 646 555 0142")
TEST_CARDS = ("4111 1111 1111 1111", "5555 5555 5555 4444", "4242-4242-4242-4242")
SSNS = ("123-45-6789", "078-05-1120")
PRODUCTS = ("trail running shoes", "3-person tent", "rain jacket", "hiking backpack",
            "down sleeping bag")
PLANS = ("Plus", "Team", "Business")
CHANNELS = ("email", "chat", "web_form")
TIERS = (("free", 0.5), ("pro", 0.35), ("enterprise", 0.15))


# ------------------------------------------------------------------ tickets

@dataclasses.dataclass(frozen=True)
class Ticket:
    ticket_id: str
    request_id: str
    category: str  # the true category: what a careful reviewer decides
    text: str
    channel: str
    tier: str
    customer_id: str
    fields: dict[str, str]  # the values the text and replies were filled from

    @property
    def has_pii(self) -> bool:
        return any(self.fields[k] in self.text for k in ("email", "phone", "card", "ssn"))


def _customer_fields(rng: random.Random) -> dict[str, str]:
    first, last = rng.choice(CUSTOMERS)
    handle = f"{first}.{last}".lower().replace("'", "")
    return {
        "first": first,
        "email": f"{handle}{rng.choice(('', str(rng.randint(2, 99))))}@example.com",
        "phone": rng.choice(PHONES), "card": rng.choice(TEST_CARDS), "ssn": rng.choice(SSNS),
        "username": f"{first[0]}{last}{rng.randint(10, 99)}".lower().replace("'", ""),
        "last4": str(rng.randint(1000, 9999)), "order": f"ORD-{rng.randint(10000, 99999)}",
        "invoice": str(rng.randint(100000, 999999)), "amount": f"${rng.randint(9, 480)}.00",
        "date": f"March {rng.randint(1, 28)}", "plan": rng.choice(PLANS),
        "product": rng.choice(PRODUCTS), "seats": str(rng.randint(12, 40)),
        "seats_used": str(rng.randint(3, 11)), "promo": f"SPRING{rng.randint(10, 30)}",
        "app_version": f"5.{rng.randint(1, 14)}.{rng.randint(0, 9)}",
        "bug": str(rng.randint(1000, 9999)),
    }


def make_tickets(count: int, rng: random.Random, first_number: int = 1) -> list[Ticket]:
    """The scenario's tickets; the same ``rng`` state always gives the same tickets."""
    tickets = []
    for number in range(first_number, first_number + count):
        category = rng.choice(CATEGORIES)
        fields = _customer_fields(rng)
        tickets.append(Ticket(
            ticket_id=f"T-{number:05d}", request_id=f"req-{rng.getrandbits(48):012x}",
            category=category, text=rng.choice(TICKETS[category]).format(**fields),
            channel=rng.choice(CHANNELS),
            tier=rng.choices([t for t, _ in TIERS], [w for _, w in TIERS])[0],
            customer_id=f"C-{rng.randint(100000, 999999)}", fields=fields))
    return tickets


# ------------------------------------------------------------------ the model

@dataclasses.dataclass(frozen=True)
class Plan:
    """What the fake model will answer for one ticket (decided up front, from the rng)."""
    category: str
    priority: str
    reply: str
    bad_reply: bool
    confidence: float
    times_out: bool  # the first attempt raises TimeoutError
    streamed: bool

    @property
    def output(self) -> str:
        return triage_json(self.category, self.priority, self.reply)


def triage_json(category: str, priority: str, reply: str) -> str:
    # One key per line, so a reviewer's correction shows as a readable diff.
    return ('{\n'
            f'  "category": "{category}",\n'
            f'  "priority": "{priority}",\n'
            f'  "suggested_reply": "{reply}"\n'
            '}')


def priority_for(category: str, tier: str) -> str:
    # Enterprise customers are one step more urgent.
    return f"P{max(1, BASE_PRIORITY[category] - (tier == 'enterprise'))}"


def good_output(ticket: Ticket, warmer: bool = False) -> str:
    """What a reviewer sends: the right category and reply (``warmer``: a tone edit)."""
    reply = GOOD_REPLIES[ticket.category].format(**ticket.fields)
    if warmer:
        reply += " We are sorry for the trouble, and thank you for your patience."
    return triage_json(ticket.category, priority_for(ticket.category, ticket.tier), reply)


def plan_triage(ticket: Ticket, variant: Variant, rng: random.Random) -> Plan:
    wrong = rng.random() < variant.wrong_category_rate
    bad_reply = not wrong and rng.random() < variant.bad_reply_rate
    category = CONFUSED_WITH[ticket.category] if wrong else ticket.category
    reply = (BAD_REPLY if bad_reply else GOOD_REPLIES[category]).format(**ticket.fields)
    # A wrong answer usually comes with lower confidence, but not always.
    confidence = rng.uniform(0.38, 0.80) if wrong else rng.uniform(0.55, 0.98)
    streamed = ticket.channel == "chat" and rng.random() < 0.25
    return Plan(category=category, priority=priority_for(category, ticket.tier), reply=reply,
                bad_reply=bad_reply, confidence=round(confidence, 3),
                times_out=not streamed and rng.random() < 0.03, streamed=streamed)


def model_right(ticket: Ticket, plan: Plan) -> bool:
    return plan.category == ticket.category and not plan.bad_reply


def _logprobs(plan: Plan) -> list[tuple[str, float]]:
    return [('{"category": "', -0.0004), (plan.category, math.log(plan.confidence)),
            ('", "priority": "', -0.0011), (plan.priority, math.log(0.5 + plan.confidence / 2)),
            ('", "suggested_reply": "', -0.0009)]


def _usage(prompt: str, output: str) -> dict[str, int]:
    return {"input_tokens": len(prompt) // 4 + 1, "output_tokens": len(output) // 4 + 1}


def _model_functions(variant: Variant) -> tuple[Callable[..., str], Callable[..., Iterator[str]]]:
    """The bot's model call for one variant: a plain and a streaming form, both recorded."""
    spec = dict(model=variant.model, model_version=variant.model_version,
                prompt_version=variant.prompt_version, provider=variant.provider,
                prompt_template_id=PROMPT_TEMPLATE_ID,
                parameters={"temperature": variant.temperature, "max_tokens": 400},
                input_from=lambda prompt, plan, attempt=1: prompt)  # record the prompt only

    @aitrail.model_call(**spec)
    def complete(prompt: str, plan: Plan, attempt: int = 1) -> str:
        if plan.times_out and attempt == 1:
            raise TimeoutError("model endpoint did not answer within 30 s")
        call = aitrail.current_call()
        call.record_output(plan.output, confidence=plan.confidence, logprobs=_logprobs(plan),
                           usage=_usage(prompt, plan.output))
        return plan.output

    @aitrail.model_call(**spec)
    def stream(prompt: str, plan: Plan, attempt: int = 1) -> Iterator[str]:
        # current_call() is None inside a decorated generator, so a streamed call
        # records its text (the joined chunks) but no confidence or usage.
        text = plan.output
        for i in range(0, len(text), 24):
            yield text[i:i + 24]

    return complete, stream


# ------------------------------------------------------------------ one ticket

@dataclasses.dataclass
class Outcome:
    ticket_id: str
    decisions: list[str]
    escalated: bool
    has_pii: bool


def _call_model(ticket: Ticket, variant: Variant, plan: Plan, tracer: Tracer,
                functions: tuple[Callable, Callable]) -> Optional[float]:
    """Run the model call (retrying one timeout); returns the confidence that was recorded."""
    prompt = PROMPTS[variant.prompt_version].format(
        channel=ticket.channel, tier=ticket.tier, ticket_id=ticket.ticket_id, text=ticket.text)
    complete, stream = functions
    for attempt in (1, 2):
        # A child span per attempt, so model_call records have a parent span.
        with tracer.start_as_current_span("llm.triage", attributes={"attempt": attempt}):
            try:
                if plan.streamed:
                    "".join(stream(prompt, plan, attempt))
                    return None
                complete(prompt, plan, attempt)
                return plan.confidence
            except TimeoutError:
                if attempt == 2:
                    raise
    return None


def _review_rationale(decision: str, ticket: Ticket, plan: Plan) -> aitrail.Rationale:
    if plan.category != ticket.category:
        return aitrail.Rationale(reason_code="wrong_category", policy_ref="POL-TRIAGE-4.2",
                                 text=f"This is a {ticket.category} ticket, not {plan.category}.")
    if plan.bad_reply:
        return aitrail.Rationale(reason_code="unsupported_promise", policy_ref="POL-COMMS-2.1",
                                 text="The reply promises a refund and a discount nobody "
                                      "approved.")
    if decision == "modify":
        return aitrail.Rationale(reason_code="reply_tone", policy_ref="POL-COMMS-1.3",
                                 text="Made the reply warmer and added the next step.")
    return aitrail.Rationale(reason_code="correct", policy_ref="POL-TRIAGE-4.2")


def _first_decision(ticket: Ticket, plan: Plan, rng: random.Random) -> str:
    if not model_right(ticket, plan):
        return "modify" if rng.random() < 0.65 else "reject"
    return "approve" if rng.random() < 0.95 else "modify"


def _review(reviewer: str, decision: str, ticket: Ticket, plan: Plan, time_spent_ms: int) -> None:
    with aitrail.review(reviewer=reviewer, time_spent_ms=time_spent_ms) as r:
        why = _review_rationale(decision, ticket, plan)
        if decision == "approve":
            r.approve(why)
        elif decision == "reject":
            r.reject(why)
        else:  # the SDK diffs this against the task's last model output
            r.modify(good_output(ticket, warmer=model_right(ticket, plan)), why)


def _time_spent(decision: str, senior: bool, rng: random.Random) -> int:
    # Simulated reading and editing time: 20 s to 10 min.
    low, high = {"approve": (20, 90), "reject": (30, 180), "modify": (60, 360)}[decision]
    if senior:
        low, high = 120, 600
    return rng.randint(low, high) * 1000


def _escalation_reason(decision: str, confidence: Optional[float]) -> str:
    if decision == "reject":
        return "first reviewer rejected the model output; needs a senior reply"
    return f"model confidence {confidence:.2f} is below the {LOW_CONFIDENCE:.2f} threshold"


def _senior_review(ticket: Ticket, plan: Plan, first: str, reviewer: str,
                   rng: random.Random) -> str:
    senior = rng.choice(SENIORS)
    aitrail.escalate(from_reviewer=reviewer, to_reviewer=senior,
                     reason=_escalation_reason(first, plan.confidence))
    # Seniors get it right; a rejected ticket sometimes goes to a manual reply.
    decision = ("approve" if model_right(ticket, plan) else
                "reject" if first == "reject" and rng.random() < 0.25 else "modify")
    _review(senior, decision, ticket, plan, _time_spent(decision, True, rng))
    return decision


def _resolve(ticket: Ticket, final: str) -> None:
    priority = priority_for(ticket.category, ticket.tier)
    outcome, what = {
        "approve": ("reply_sent", "sent the model's reply"),
        "modify": ("reply_sent_after_edit", "sent the reviewer's corrected reply"),
        "reject": ("handled_manually", "routed to the manual reply queue"),
    }[final]
    aitrail.resolve(resolution=outcome,
                    final_decision=f"category={ticket.category} priority={priority}; {what}")


def handle_ticket(ticket: Ticket, rng: random.Random, tracer: Tracer,
                  models: dict[str, tuple[Callable, Callable]]) -> Outcome:
    """One ticket, start to finish, in its own trace; every record is tagged with the task."""
    span = tracer.start_as_current_span("handle_ticket", attributes={"ticket.id": ticket.ticket_id})
    with span, aitrail.task(ticket.ticket_id, request_id=ticket.request_id):
        aitrail.event("task_created", attributes={
            "channel": ticket.channel, "customer_tier": ticket.tier, "language": "en",
            "queue": "support-en"})
        variant = rng.choice(VARIANTS)
        plan = plan_triage(ticket, variant, rng)
        confidence = _call_model(ticket, variant, plan, tracer, models[variant.prompt_version])
        decisions = _human_review(ticket, plan, confidence, rng)
        _resolve(ticket, decisions[-1])
    return Outcome(ticket.ticket_id, decisions, len(decisions) > 1, ticket.has_pii)


def _human_review(ticket: Ticket, plan: Plan, confidence: Optional[float],
                  rng: random.Random) -> list[str]:
    """The first review, and a senior's when the model was unsure or the reviewer rejected."""
    reviewer = rng.choice(REVIEWERS)
    if ticket.category in ACCOUNT_CATEGORIES and rng.random() < 0.35:
        aitrail.data_access(actor=reviewer, resource=f"crm://customers/{ticket.customer_id}",
                            purpose="verify account ownership")
    first = _first_decision(ticket, plan, rng)
    _review(reviewer, first, ticket, plan, _time_spent(first, False, rng))
    unsure = confidence is not None and confidence < LOW_CONFIDENCE
    if first == "reject" or unsure:
        return [first, _senior_review(ticket, plan, first, reviewer, rng)]
    return [first]
