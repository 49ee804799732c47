"""Row locks for the ledger, always taken in one order: ledger accounts by ascending primary
key. No other billing lock is taken while holding them."""

from collections.abc import Iterable

from apps.billing.models import LedgerAccount


def lock_accounts(account_ids: Iterable[int]) -> dict[int, LedgerAccount]:
    """Lock the accounts a posting touches, in pk order, and return them by pk (fresh rows).

    Races prevented: two postings on one wallet each reading the same balance and both passing
    the overdraft check (TOCTOU), so the wallet ends below its floor; and two postings that
    touch the same pair of accounts in opposite orders (a top-up crediting a wallet while usage
    debits it towards revenue) deadlocking, which the fixed order rules out. The cached balance
    itself is moved by the database as entries are inserted, so it never loses an update."""
    ids = sorted(set(account_ids))
    rows = LedgerAccount.objects.select_for_update().filter(pk__in=ids).order_by("pk")
    return {account.pk: account for account in rows}
