"""Credit bureau, bank wires, account closure and e-mail: sandbox simulators with a live HTTP path.

Without a connection, in sandbox, each tool answers from a deterministic simulator: the same
inputs, idempotency key and attempt always give the same output. Simulated failures follow the
scheme in procedures/tools/support.py, driven by one *subject* input per tool (named in each
description): "flaky" fails transiently on attempts 1-2, "timeout" transiently on every attempt,
"blocked" permanently.

With a connection for the tool's integration (required in live), the tool POSTs its inputs as JSON
to `connection.config["base_url"]` + the tool's path, with the Idempotency-Key header and the
connection secret as a bearer token, and returns the parsed JSON answer as its output. Requests
and responses are recorded as described in procedures/tools/transport.py; simulated ones have the
same shape with `"simulated": true` and a path instead of a URL.
"""

from abc import ABC, abstractmethod
from typing import Any, ClassVar
from urllib.parse import quote

from procedures.tools import register
from procedures.tools.base import PermanentToolError, Tool, ToolContext, ToolResult
from procedures.tools.support import (
    check_inputs,
    created_timestamp,
    digest,
    iso_time,
    number_from,
    simulated_failure,
    simulated_request,
    simulated_response,
)
from procedures.tools.transport import send_json

CURRENCY = {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217 code, e.g. EUR"}
MINOR_UNITS = {
    "type": "integer",
    "minimum": 1,
    "maximum": 100_000_000_000,
    "description": "Amount in minor units (cents).",
}
IBAN = {"type": "string", "pattern": "^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$"}
BIC = {"type": "string", "pattern": "^[A-Z]{6}[A-Z0-9]{2}([A-Z0-9]{3})?$"}
EMAIL = {"type": "string", "pattern": r"^[^@\s]+@[^@\s]+\.[^@\s]+$", "maxLength": 254}


class SimulatedIntegrationTool(Tool, ABC):
    """A tool with a sandbox simulator and a live endpoint at `connection.config["base_url"]`."""

    subject_input: ClassVar[str]
    transient_failure: ClassVar[tuple[str, dict]]
    permanent_failure: ClassVar[tuple[str, dict]]

    @abstractmethod
    def path(self, inputs: dict) -> str: ...

    @abstractmethod
    def simulate(self, inputs: dict, context: ToolContext, request: str) -> dict: ...

    def call(self, inputs: dict, context: ToolContext) -> ToolResult:
        check_inputs(self.input_schema, inputs)
        if context.connection is not None:
            return self._call_live(inputs, context)
        if context.environment == "live":
            raise PermanentToolError(f"no live connection configured for {self.integration}")
        request = simulated_request("POST", self.path(inputs), context, inputs)
        simulated_failure(
            inputs.get(self.subject_input),
            context,
            request=request,
            transient=self.transient_failure,
            permanent=self.permanent_failure,
        )
        output = self.simulate(inputs, context, request)
        return ToolResult(output=output, request=request, response=simulated_response(output))

    def _call_live(self, inputs: dict, context: ToolContext) -> ToolResult:
        base_url = (context.connection.config or {}).get("base_url")
        if not base_url:
            raise PermanentToolError(
                f"the {self.integration} connection has no base_url in its config"
            )
        exchange = send_json(
            "POST",
            base_url.rstrip("/") + self.path(inputs),
            context=context,
            body=inputs,
            secret=context.connection.get_secret(),
        )
        return ToolResult(
            output=exchange.body, request=exchange.request, response=exchange.response
        )


def _error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


@register
class CreditCheck(SimulatedIntegrationTool):
    name = "credit.check"
    integration = "credit"
    description = (
        "Pull a credit report for a customer: score 300-850, band and recommended limit. "
        "Sandbox: the score is derived from customer_id; a customer_id containing 'flaky' fails "
        "transiently on attempts 1-2, 'timeout' on every attempt, 'blocked' permanently "
        "(frozen credit file)."
    )
    input_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["customer_id"],
        "properties": {
            "customer_id": {"type": "string", "minLength": 1, "maxLength": 100},
            "requested_amount": MINOR_UNITS,
            "currency": CURRENCY,
        },
    }
    subject_input = "customer_id"
    transient_failure = (
        "the credit bureau is temporarily unavailable",
        _error("bureau_unavailable", "Bureau temporarily unavailable, try again"),
    )
    permanent_failure = (
        "the credit bureau refused the check: the customer's credit file is frozen",
        _error("file_frozen", "Credit file frozen at the consumer's request"),
    )

    def path(self, inputs: dict) -> str:
        return "/credit-checks"

    def simulate(self, inputs: dict, context: ToolContext, request: str) -> dict:
        customer_id = inputs["customer_id"]
        score = number_from("credit-score", customer_id, low=300, high=850)
        limit = max(0, score - 500) * 2_000
        report = {
            "object": "credit_report",
            "id": "crr_" + digest(context.idempotency_key)[:20],
            "customer_id": customer_id,
            "bureau": "sandbox-bureau",
            "score": score,
            "band": _credit_band(score),
            "recommended_limit": limit,
            "currency": inputs.get("currency", "USD"),
            "checked_at": iso_time(created_timestamp(context)),
        }
        if "requested_amount" in inputs:
            report["requested_amount"] = inputs["requested_amount"]
            report["within_limit"] = inputs["requested_amount"] <= limit
        return report


def _credit_band(score: int) -> str:
    for floor, band in ((750, "excellent"), (700, "good"), (650, "fair"), (580, "poor")):
        if score >= floor:
            return band
    return "very_poor"


@register
class BankWireTransfer(SimulatedIntegrationTool):
    name = "bank.wire_transfer"
    integration = "bank"
    description = (
        "Send a bank wire (amount in minor units) to an IBAN/BIC beneficiary. Sandbox: a "
        "reference containing 'flaky' fails transiently on attempts 1-2 (gateway unavailable), "
        "'timeout' on every attempt, 'blocked' permanently (beneficiary bank rejects); an amount "
        "over the daily limit of 1,000,000,000 minor units is refused permanently."
    )
    input_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "amount",
            "currency",
            "beneficiary_name",
            "beneficiary_iban",
            "beneficiary_bic",
            "reference",
        ],
        "properties": {
            "amount": MINOR_UNITS,
            "currency": CURRENCY,
            "beneficiary_name": {"type": "string", "minLength": 1, "maxLength": 140},
            "beneficiary_iban": IBAN,
            "beneficiary_bic": BIC,
            "reference": {"type": "string", "minLength": 1, "maxLength": 140},
            "execution_date": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
        },
    }
    subject_input = "reference"
    transient_failure = (
        "the bank's payment gateway is unavailable",
        _error("gateway_unavailable", "Payment gateway unavailable"),
    )
    permanent_failure = (
        "the beneficiary bank rejected the transfer: beneficiary account blocked",
        _error("beneficiary_account_blocked", "Beneficiary account blocked (AC06)"),
    )
    daily_limit = 1_000_000_000

    def path(self, inputs: dict) -> str:
        return "/wire-transfers"

    def simulate(self, inputs: dict, context: ToolContext, request: str) -> dict:
        if inputs["amount"] > self.daily_limit:
            body = _error("limit_exceeded", "Amount exceeds the daily wire limit")
            raise PermanentToolError(
                f"the amount {inputs['amount']} exceeds the daily wire limit of "
                f"{self.daily_limit} minor units",
                request=request,
                response=simulated_response(body, 422),
            )
        key_hash = digest(context.idempotency_key)
        created = created_timestamp(context)
        return {
            "object": "wire_transfer",
            "id": "wt_" + key_hash[:20],
            "status": "submitted",
            "amount": inputs["amount"],
            "currency": inputs["currency"],
            "beneficiary": {
                "name": inputs["beneficiary_name"],
                "iban": inputs["beneficiary_iban"],
                "bic": inputs["beneficiary_bic"],
            },
            "debtor_account": {"iban": "GB33BUKB20201555555555", "bic": "BUKBGB22"},
            "reference": inputs["reference"],
            "uetr": _uuid4_from(key_hash),
            "execution_date": inputs.get("execution_date", iso_time(created)[:10]),
            "created_at": iso_time(created),
        }


def _uuid4_from(hex_digest: str) -> str:
    # A UETR (SWIFT's end-to-end reference) is a version-4 UUID.
    h = hex_digest[:32]
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


@register
class AccountsClose(SimulatedIntegrationTool):
    name = "accounts.close"
    integration = "accounts"
    description = (
        "Close a customer account and settle its final balance: a zero balance needs nothing, a "
        "positive one is transferred to transfer_balance_to (IBAN) or paid by cheque, and is held "
        "for review when the reason is fraud. Sandbox: an account_id containing 'overdrawn' has "
        "a negative balance and cannot be closed (permanent); 'flaky' fails transiently on "
        "attempts 1-2, 'timeout' on every attempt, 'blocked' permanently (legal hold)."
    )
    input_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["account_id", "reason"],
        "properties": {
            "account_id": {"type": "string", "minLength": 1, "maxLength": 64},
            "reason": {
                "enum": ["customer_request", "dormant", "fraud", "compliance", "deceased"],
            },
            "transfer_balance_to": IBAN,
            "effective_date": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
        },
    }
    subject_input = "account_id"
    transient_failure = (
        "the core banking system is busy",
        _error("core_busy", "Core banking system busy"),
    )
    permanent_failure = (
        "the account is under a legal hold and cannot be closed",
        _error("legal_hold", "Account under legal hold"),
    )
    currency = "EUR"

    def path(self, inputs: dict) -> str:
        return f"/accounts/{quote(inputs['account_id'], safe='')}/close"

    def simulate(self, inputs: dict, context: ToolContext, request: str) -> dict:
        account_id = inputs["account_id"]
        balance = self._balance(account_id)
        if balance < 0:
            body = _error("negative_balance", "Account has a negative balance")
            raise PermanentToolError(
                f"account {account_id} has a negative balance of {balance} minor units "
                f"({self.currency}); settle it before closing",
                request=request,
                response=simulated_response(body, 409),
            )
        closure_id = "acl_" + digest(context.idempotency_key)[:20]
        transfer = None
        if balance == 0:
            disposition = "none"
        elif inputs["reason"] == "fraud":
            disposition = "held_for_review"
        elif "transfer_balance_to" in inputs:
            disposition = "transferred"
            transfer = {
                "amount": balance,
                "currency": self.currency,
                "to_iban": inputs["transfer_balance_to"],
                "reference": f"CLOSE-{closure_id[4:16].upper()}",
            }
        else:
            disposition = "cheque_issued"
        closed_at = iso_time(created_timestamp(context))
        return {
            "object": "account_closure",
            "id": closure_id,
            "account_id": account_id,
            "status": "closed",
            "reason": inputs["reason"],
            "final_balance": {"amount": balance, "currency": self.currency},
            "disposition": disposition,
            "balance_transfer": transfer,
            "effective_date": inputs.get("effective_date", closed_at[:10]),
            "closed_at": closed_at,
        }

    @staticmethod
    def _balance(account_id: str) -> int:
        if "overdrawn" in account_id.lower():
            return -number_from("balance", account_id, low=100, high=50_000)
        # A quarter of accounts are empty; the rest hold up to 2,500.00.
        if number_from("empty", account_id, low=0, high=3) == 0:
            return 0
        return number_from("balance", account_id, low=1, high=250_000)


@register
class NotifyEmail(SimulatedIntegrationTool):
    name = "notify.email"
    integration = "email"
    description = (
        "Send a plain-text e-mail. Sandbox: a 'to' address containing 'flaky' is deferred "
        "(transient) on attempts 1-2, 'timeout' on every attempt, 'blocked' is refused "
        "permanently (suppressed after a hard bounce)."
    )
    input_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["to", "subject", "body"],
        "properties": {
            "to": EMAIL,
            "cc": {"type": "array", "items": EMAIL, "maxItems": 20},
            "reply_to": EMAIL,
            "subject": {"type": "string", "minLength": 1, "maxLength": 200},
            "body": {"type": "string", "minLength": 1, "maxLength": 20_000},
        },
    }
    subject_input = "to"
    transient_failure = (
        "the mail relay deferred the message",
        _error("deferred", "421 4.7.0 Try again later"),
    )
    permanent_failure = (
        "the recipient is suppressed after a hard bounce",
        _error("suppressed", "550 5.1.1 Recipient address rejected"),
    )

    def path(self, inputs: dict) -> str:
        return "/messages"

    def simulate(self, inputs: dict, context: ToolContext, request: str) -> dict:
        key_hash = digest(context.idempotency_key)
        output: dict[str, Any] = {
            "object": "email",
            "id": "msg_" + key_hash[:20],
            "message_id": f"<{key_hash[:32]}@sandbox.rapidfolio.test>",
            "status": "queued",
            "to": inputs["to"],
            "cc": inputs.get("cc", []),
            "subject": inputs["subject"],
            "accepted_at": iso_time(created_timestamp(context)),
        }
        return output
