"""Load, validate and clean: the data layer (Ibis expressions, DuckDB by default).

Everything here that touches transaction lines is an Ibis expression, so it runs unchanged on
the embedded DuckDB (default), Spark or a warehouse. Customer-scale tables (customers, products,
events, feedback) come back as pandas.

Modules (one job each)
----------------------
==============  ==============================================================================
``engine``      :func:`connect`, :class:`BackendError`, :func:`materialize`, :func:`to_pandas`,
                :func:`connect_from_environment` (for top-level callers only)
``readers``     opening files and frames, column mapping, type coercion, customer-id and flag
                normalisation, date parsing, the YAML data config
``presets``     ``online_retail``, ``cdnow``, ``instacart``, ``completejourney`` readers,
                :data:`CATEGORY_RULES`, :data:`NON_PRODUCT_CODES`
``cleaning``    :func:`clean_transactions` and its rules, :func:`quality_summary`
``store``       :class:`Store`, :func:`load_store`
==============  ==============================================================================

Typical use
-----------
>>> from segmentation import privacy
>>> store = load_store("synthetic", n_customers=300, random_state=1)          # doctest: +SKIP
>>> store = load_store("data/raw/online_retail_II.csv.gz", preset="online_retail", as_of="2011-12-10",
...                    suppress=privacy.SuppressionList(DEFAULT_SUPPRESSION).ids())  # doctest: +SKIP
>>> print(quality_summary(store.quality))                              # doctest: +SKIP

The cleaning rules are listed in :mod:`segmentation.data.cleaning`, the input rules (encodings,
duplicate columns, customer ids, yes/no flags, dates, time zones) in
:mod:`segmentation.data.readers`.

Data config (YAML): several files without Python
------------------------------------------------
``source`` may be a ``.yaml`` file that says which file holds which table, how its columns map
to the data contract, and which columns are constants (example: ``configs/data_example.yaml``)::

    name: marketplace                 # optional label
    preset: null                      # optional: a built-in preset reading tables.transactions.path
    currency: BRL                     # the currency of the prices (Store.currency)
    duplicates: keep                  # drop (default) | keep: one line per item, quantity 1
    tables:
      transactions:
        path: order_items.csv         # relative to this file; CSV, CSV.gz or Parquet
        columns:                      # your column: canonical column
          price: unit_price
          shipping_limit_date: order_date
        constants:                    # canonical column: value on every row
          quantity: 1
          channel: online
        join:                         # optional: columns from other files, by a key (left join)
          - path: orders.csv
            on: order_id              # the key's canonical name in both files (after mapping)
            columns: {customer_id: customer_id}
      customers: {path: customers.csv, columns: {customer_state: region}}
      products:  {path: products.csv, columns: {product_category_name: category}}
      feedback:  {path: reviews.csv, columns: {review_score: csat, review_creation_date: timestamp}}

Allowed keys: ``name, preset, currency, duplicates, tables``; per table ``path, columns,
constants, join``; per join ``path, on, columns`` (the key must be unique in the joined file;
lines without a match keep missing values and are dropped and counted by the cleaning rules).
"""

from segmentation.data.cleaning import WHOLESALE_FLOOR, WHOLESALE_MADS, clean_transactions, outlier_threshold, quality_summary
from segmentation.data.engine import (
    BACKEND_ENV,
    BACKEND_OPTIONS_ENV,
    BackendError,
    connect,
    connect_from_environment,
    materialize,
    to_pandas,
)
from segmentation.data.presets import (
    CATEGORY_RULES,
    INSTACART_ANCHOR,
    NON_PRODUCT_CODES,
    PRESET_CURRENCY,
    PRESETS,
    categorize,
)
from segmentation.data.readers import (
    FALSE_SPELLINGS,
    MISSING_ID_SPELLINGS,
    TRUE_SPELLINGS,
    DataContractError,
    _is_parquet_dataset,
    customer_id_expr,
    normalize_customer_ids,
    parse_flags,
    read_data_config,
    read_table,
)
from segmentation.data.store import DEFAULT_SUPPRESSION, PROJECT_ROOT, Store, load_store

__all__ = [
    "DataContractError",
    "BackendError",
    "Store",
    "PRESETS",
    "PRESET_CURRENCY",
    "CATEGORY_RULES",
    "NON_PRODUCT_CODES",
    "MISSING_ID_SPELLINGS",
    "TRUE_SPELLINGS",
    "FALSE_SPELLINGS",
    "WHOLESALE_FLOOR",
    "WHOLESALE_MADS",
    "connect",
    "read_table",
    "read_data_config",
    "load_store",
    "clean_transactions",
    "outlier_threshold",
    "quality_summary",
    "categorize",
    "normalize_customer_ids",
    "customer_id_expr",
    "parse_flags",
    "to_pandas",
    "materialize",
    "connect_from_environment",
    "BACKEND_ENV",
    "BACKEND_OPTIONS_ENV",
    "DEFAULT_SUPPRESSION",
    "PROJECT_ROOT",
    "INSTACART_ANCHOR",
]
