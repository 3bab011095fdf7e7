"""Data-subject requests: everything held or derived about one customer (right of access),
and erasure (right to be forgotten), as run by ``segmentation export`` and ``segmentation erase``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from segmentation import privacy
from segmentation.data import PROJECT_ROOT, Store, to_pandas
from segmentation.features import lifetime_summary
from segmentation.personas import build_personas
from segmentation.pipeline import segment_customers
from segmentation.recommend import Recommender

__all__ = ["customer_record", "erase", "PRIVACY_DIR"]

PRIVACY_DIR = PROJECT_ROOT / "data" / "privacy"


def customer_record(store: Store, customer_id: str, as_of: str | pd.Timestamp, *, seed: int = 42) -> dict[str, Any]:
    """Source rows and every derived value about one (pseudonymous) customer, JSON-ready.

    Derived: features and RFM scores, segment and persona name, lifetime-model summary and
    value scores, and the current recommendations -- computed exactly as the reports do.
    The customer's own PII is included: it is their data.
    """
    from segmentation.value import BetaGeo, GammaGamma, customer_value

    t = store.transactions
    source = to_pandas(t.filter(t.customer_id == customer_id))
    tables: dict[str, pd.DataFrame | None] = {
        "transactions": source, "customers": store.customers, "pii": store.pii,
        "events": store.events, "feedback": store.feedback,
    }
    result = segment_customers(store, as_of, random_state=seed)
    if customer_id in result.table.index:
        personas = build_personas(result.table)
        features = result.table.loc[[customer_id]].assign(persona=lambda d: d["segment"].map(personas.summary["name"]))
        tables["features_and_segments"] = features
        summary = lifetime_summary(t, as_of)
        bg, gg = BetaGeo().fit(summary), GammaGamma().fit(summary)
        tables["value_scores"] = customer_value(summary.loc[[customer_id]], bg, gg)
        purchases = to_pandas(t.select("customer_id", "order_id", "order_date", "product_id", "quantity"))
        rec = Recommender(random_state=seed).fit(purchases, as_of, segments=result.table["segment"], products=store.products)
        tables["recommendations"] = rec.recommend([customer_id])
    record = privacy.export_customer(customer_id, tables)
    record["as_of"] = str(pd.Timestamp(as_of).date())
    record["profiling"] = "included" if "features_and_segments" in tables else "not profiled (no consent or no purchase before as_of)"
    return record


def erase(customer_id: str, *, data_dir: str | Path = PROJECT_ROOT / "data", reports_dir: str | Path = PROJECT_ROOT / "reports",
          privacy_dir: str | Path = PRIVACY_DIR) -> pd.DataFrame:
    """Erase a (pseudonymous) customer: see :func:`segmentation.privacy.erase_customer`.
    The suppression list and the audit log live in ``privacy_dir`` (which is never scanned)."""
    privacy_dir = Path(privacy_dir)
    data_dirs = [p for p in Path(data_dir).iterdir() if p.is_dir() and p.resolve() != privacy_dir.resolve()] if Path(data_dir).is_dir() else []
    return privacy.erase_customer(
        customer_id, data_dirs=data_dirs, report_dirs=[reports_dir],
        suppression=privacy.SuppressionList(privacy_dir / "suppression.txt"), audit_log=privacy_dir / "audit.jsonl",
    )
