"""The data contract: canonical tables, their columns, types and meaning.

This module is the single source of truth for column names. Every other module
refers to these names; loaders map a user's columns onto them.

Conventions
-----------
* Money is in the store's currency, as float64.
* ``unit_price`` is the price actually paid per unit (after any discount);
  ``discount`` is the money saved on the line (>= 0, 0 when none).
* A return or cancellation is a transaction line with negative ``quantity``.
* After cleaning, transactions gain ``amount = quantity * unit_price``,
  ``is_return`` (quantity < 0) and ``is_outlier`` (wholesale-size line, kept
  and flagged, never silently dropped).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Column",
    "TABLES",
    "TRANSACTIONS",
    "CUSTOMERS",
    "PRODUCTS",
    "EVENTS",
    "FEEDBACK",
    "PII_COLUMNS",
    "EVENT_VOCABULARY",
    "required_columns",
    "column_names",
    "rules_table",
]


@dataclass(frozen=True)
class Column:
    """One column of a canonical table."""

    name: str
    dtype: str  # "string", "timestamp", "date", "float64", "int64", "boolean"
    required: bool
    meaning: str


TRANSACTIONS: tuple[Column, ...] = (
    Column("customer_id", "string", True, "Customer identifier (stripped, then pseudonymized at load when a key is set); missing IDs "
                                          "(blank, NaN, None, null, NA, N/A, -) are dropped and counted."),
    Column("order_id", "string", True, "Order / invoice / basket identifier."),
    Column("order_date", "timestamp", True, "When the order was placed."),
    Column("product_id", "string", True, "Product / SKU identifier."),
    Column("category", "string", True, "Product category (from the products table when absent; 'unknown' otherwise)."),
    Column("quantity", "float64", True, "Units on the line; negative for returns and cancellations."),
    Column("unit_price", "float64", True, "Price paid per unit after discount."),
    Column("discount", "float64", False, "Money saved on the line (>= 0); 0 when absent."),
    Column("channel", "string", False, "Sales channel, e.g. store, online, app."),
    Column("store_id", "string", False, "Store or site identifier."),
)

CUSTOMERS: tuple[Column, ...] = (
    Column("customer_id", "string", True, "Customer identifier, as in transactions."),
    Column("signup_date", "date", False, "When the customer joined (loyalty card, account)."),
    Column("birth_date", "date", False, "Date of birth (used for age bands and birthday greetings only)."),
    Column("age_band", "string", False, "Age band, e.g. '25-34'; derived from birth_date when absent."),
    Column("region", "string", False, "Region or country."),
    Column("household", "string", False, "Household type, e.g. single, couple, family."),
    Column("household_size", "int64", False, "People in the household."),
    Column("consent_profiling", "boolean", False, "Customer allows analysis/profiling (yes/no, true/false, y/n, 1/0, t/f, on/off, "
                                                  "ja/nein, any case; default True when absent or blank, blanks counted)."),
    Column("consent_marketing", "boolean", False, "Customer allows marketing contact (same spellings; default False when absent "
                                                  "or blank, blanks counted)."),
    Column("name", "string", False, "PII: split off at load, never used in analysis."),
    Column("email", "string", False, "PII: split off at load, never used in analysis."),
    Column("phone", "string", False, "PII: split off at load, never used in analysis."),
    Column("address", "string", False, "PII: split off at load, never used in analysis."),
)

PRODUCTS: tuple[Column, ...] = (
    Column("product_id", "string", True, "Product / SKU identifier."),
    Column("name", "string", False, "Product name (optional; products without one are shown by id)."),
    Column("category", "string", False, "Category."),
    Column("subcategory", "string", False, "Subcategory, when known."),
)

EVENTS: tuple[Column, ...] = (
    Column("customer_id", "string", False, "Customer identifier; may be missing for anonymous sessions."),
    Column("session_id", "string", True, "Session identifier."),
    Column("timestamp", "timestamp", True, "When the event happened."),
    Column("event", "string", True, "Event name from EVENT_VOCABULARY (mapped through the event mapping)."),
    Column("channel", "string", False, "Acquisition / touch channel, e.g. search, social, email, direct."),
)

FEEDBACK: tuple[Column, ...] = (
    Column("customer_id", "string", True, "Customer identifier."),
    Column("timestamp", "timestamp", True, "When the feedback was given."),
    Column("nps", "float64", False, "Likelihood to recommend, 0-10."),
    Column("csat", "float64", False, "Satisfaction, 1-5."),
    Column("comment", "string", False, "Free text; PII is scrubbed before analysis."),
)

TABLES: dict[str, tuple[Column, ...]] = {
    "transactions": TRANSACTIONS,
    "customers": CUSTOMERS,
    "products": PRODUCTS,
    "events": EVENTS,
    "feedback": FEEDBACK,
}

#: Columns that identify a person directly; split off at load.
PII_COLUMNS: tuple[str, ...] = ("name", "email", "phone", "address")

#: The journey steps in their natural order (first touch to post-purchase).
EVENT_VOCABULARY: tuple[str, ...] = (
    "ad_impression",
    "ad_click",
    "visit",
    "product_view",
    "add_to_cart",
    "checkout",
    "order",
    "support_contact",
    "return",
)


def column_names(table: str) -> list[str]:
    """All canonical column names of ``table``."""
    return [c.name for c in TABLES[table]]


def required_columns(table: str) -> list[str]:
    """Required canonical column names of ``table``."""
    return [c.name for c in TABLES[table] if c.required]


def rules_table(name: str) -> "pd.DataFrame":
    """An editable business-rule table shipped in ``segmentation/rules/<name>.csv``
    (RFM segments, persona indices/names/actions, offers, loyalty tiers)."""
    from importlib import resources

    import pandas as pd

    with resources.files("segmentation").joinpath(f"rules/{name}.csv").open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh)
