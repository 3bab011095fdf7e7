"""Understand customers from their purchase history.

Modules, named after what they do for you:

* :mod:`segmentation.schema`     -- the data contract (canonical tables and columns)
* :mod:`segmentation.data`       -- load, validate and clean (Ibis; DuckDB by default)
* :mod:`segmentation.synthetic`  -- a seeded synthetic store with hidden ground truth
* :mod:`segmentation.features`   -- customer features, RFM and lifetime-model summary
* :mod:`segmentation.rfm`        -- RFM scores and named RFM segments
* :mod:`segmentation.segments`   -- behavioural segmentation with honest model selection
* :mod:`segmentation.personas`   -- personas from segments, and individual profiles
* :mod:`segmentation.value`      -- BG/NBD and Gamma-Gamma: expected purchases, churn, CLV
* :mod:`segmentation.recommend`  -- co-purchase rules and per-customer recommendations
* :mod:`segmentation.offers`     -- promotions, loyalty tiers, key dates
* :mod:`segmentation.journey`    -- funnels, paths, attribution, cohorts, migration
* :mod:`segmentation.satisfaction` -- NPS/CSAT and feedback themes
* :mod:`segmentation.privacy`    -- pseudonymization, consent, access, erasure, retention
* :mod:`segmentation.runner`     -- scheduled papermill runs with rendered reports
"""

__version__ = "0.1.0"
