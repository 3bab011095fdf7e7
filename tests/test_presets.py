"""Presets that know their data, data configs, duplicates, optional columns, preflight and
``segmentation check`` (issue 14, data parts). Real data from ``../shared/data``; small
hand-made files in ``tmp_path``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from segmentation.cli import main
from segmentation.data import NON_PRODUCT_CODES, DataContractError, load_store, to_pandas
from segmentation.preflight import MIN_REPEAT_SHARE, preflight

ROOT = Path(__file__).resolve().parents[1]
OR_FILE = "uci_online_retail_ii/online_retail_ii_year_2009_2010.csv.gz"


def _rules(quality: pd.DataFrame, table: str = "transactions") -> dict[str, int]:
    return quality[quality["table"] == table].set_index("rule")["rows"].to_dict()


def _detail(quality: pd.DataFrame, rule: str) -> str:
    return str(quality.loc[(quality["table"] == "transactions") & (quality["rule"] == rule), "detail"].iloc[0])


def _status(table: pd.DataFrame, section: str) -> tuple[str, str]:
    row = table[table["section"] == section].iloc[0]
    return row["status"], row["reason"]


# --------------------------------------------------------------------------------------------
# online_retail
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def online_retail(shared_data):
    return load_store(shared_data / OR_FILE, preset="online_retail", as_of="2010-12-10", pseudonymize=False, suppress=[])


def test_online_retail_on_the_real_file(online_retail):
    store = online_retail
    r = _rules(store.quality)
    assert r["rows_in"] == 525_461 and r["missing_customer_id"] == 107_927  # as in PROVENANCE.txt
    assert r["rows_out"] == r["rows_in"] - store.quality.loc[
        (store.quality["table"] == "transactions") & (store.quality["action"] == "dropped"), "rows"].sum()
    tx = to_pandas(store.transactions)
    assert 4_300 < tx["customer_id"].nunique() <= 4_383
    # non-product codes: counted, and absent from lines and products
    codes = ["POST", "DOT", "M", "C2", "D", "BANK CHARGES", "AMAZONFEE", "ADJUST", "TEST001", "PADS", "S"]
    assert not set(tx["product_id"]) & set(codes) and not set(store.products["product_id"]) & set(codes)
    assert r["non_product"] > 1_500 and "postage" in _detail(store.quality, "non_product")
    # every product has a name: its most frequent description (not the alphabetical maximum)
    assert store.products["name"].notna().all()
    names = store.products.set_index("product_id")["name"]
    assert names["85123A"] == "WHITE HANGING HEART T-LIGHT HOLDER"
    # categories: few lines in "other"
    other = (tx["category"] == "other").mean()
    assert other < 0.05, f"{other:.1%} of lines in 'other'"
    assert {"christmas", "kitchen_dining", "bags", "lights_candles"} <= set(store.products["category"])
    # the biggest wholesale lines are flagged, ordinary trade quantities are not
    assert tx.loc[tx["quantity"].abs().idxmax(), "is_outlier"]
    assert not tx.loc[tx["quantity"].abs() <= 1_000, "is_outlier"].any()
    assert store.currency == "GBP" and store.customers["region"].nunique() > 30


def _or_file(tmp_path) -> Path:
    rows = [
        ("536365", "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", 6, "2010-12-01 08:26", 2.55, 17850),
        ("536366", "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", 6, "2010-12-01 08:28", 2.55, 17851),
        ("536367", "85123A", "wrongly marked carton 22804", 6, "2010-12-01 09:00", 2.55, 17852),
        ("536368", "22633", "HAND WARMER UNION JACK", 6, "2010-12-01 09:01", 1.85, 17850),
        ("536369", "22633", "HAND WARMER UNION FLAG", 6, "2010-12-01 09:02", 1.85, 17851),  # tie: alphabetical first
        ("536370", "21730", None, 6, "2010-12-01 09:03", 4.25, 17850),  # no description anywhere
        ("536371", "POST", "POSTAGE", 1, "2010-12-01 09:04", 18.0, 17850),
        ("536372", "M", "Manual", 1, "2010-12-01 09:05", 0.85, 17851),
        ("536373", "C2", "CARRIAGE", 1, "2010-12-01 09:06", 50.0, 17852),
        ("C536374", "D", "Discount", -1, "2010-12-01 09:07", 27.5, 17850),
        ("536375", "BANK CHARGES", "Bank Charges", 1, "2010-12-01 09:08", 15.0, 17851),
        ("536376", "AMAZONFEE", "AMAZON FEE", 1, "2010-12-01 09:09", 13541.33, 17852),
        ("536377", "gift_0001_20", "Dotcomgiftshop Gift Voucher £20.00", 1, "2010-12-01 09:10", 17.39, 17850),
        ("536378", "CRUK", "CRUK Commission", -1, "2010-12-01 09:11", 1.6, 17851),
        ("536379", "22423", "REGENCY CAKESTAND 3 TIER", 1, "2010-12-01 09:12", 12.75, 17852),
        ("C536380", "22423", "REGENCY CAKESTAND 3 TIER", -1, "2010-12-01 09:13", 12.75, 17852),
    ]
    df = pd.DataFrame(rows, columns=["Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price", "Customer ID"])
    df["Country"] = "United Kingdom"
    df.to_csv(tmp_path / "or.csv", index=False)
    return tmp_path / "or.csv"


def test_online_retail_names_non_products_and_returns_on_a_hand_made_file(tmp_path):
    store = load_store(_or_file(tmp_path), preset="online_retail", as_of="2010-12-02", pseudonymize=False)
    names = store.products.set_index("product_id")["name"].to_dict()
    assert names == {"85123A": "WHITE HANGING HEART T-LIGHT HOLDER", "22633": "HAND WARMER UNION FLAG",
                     "22423": "REGENCY CAKESTAND 3 TIER"}  # most frequent; ties alphabetical; no nameless product
    r = _rules(store.quality)
    assert r["non_product"] == 8
    detail = _detail(store.quality, "non_product")
    for kind in ("postage 2", "manual 1", "discount 1", "bank_charges 1", "fee 2", "gift_voucher 1"):
        assert kind in detail
    tx = to_pandas(store.transactions)
    assert set(tx["product_id"]) == {"85123A", "22633", "21730", "22423"}
    assert r["return_or_cancellation"] == 1  # the cake stand; the discount line is not a return
    assert r["unknown_product"] == 1 and tx.loc[tx["product_id"] == "21730", "category"].tolist() == ["unknown"]
    assert set(NON_PRODUCT_CODES["kind"]) >= {"postage", "discount", "fee", "gift_voucher", "adjustment"}


# --------------------------------------------------------------------------------------------
# other presets on the shared data
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path, customers, lines", [("cdnow/CDNOW_sample.txt", 2_357, 6_919),
                                                    ("cdnow/CDNOW_master.txt", 23_570, 69_659)])
def test_cdnow_master_and_sample(shared_data, path, customers, lines):
    store = load_store(shared_data / path, preset="cdnow", as_of="1998-07-01", pseudonymize=False)
    tx = to_pandas(store.transactions)
    assert len(tx) == lines and tx["customer_id"].nunique() == customers  # PROVENANCE.txt
    assert tx["order_date"].min() == pd.Timestamp("1997-01-01") and tx["order_date"].max() == pd.Timestamp("1998-06-30")
    assert store.currency == "USD"
    table = preflight(store)
    assert _status(table, "co-purchase rules")[0] == "skipped" and _status(table, "category mix")[0] == "skipped"
    assert _status(table, "lifetime value (BG/NBD, Gamma-Gamma)")[0] == "ok"


def test_instacart_in_the_engine(shared_data):
    store = load_store(shared_data / "instacart_sample", preset="instacart", as_of="2018-01-01", pseudonymize=False)
    tx = to_pandas(store.transactions)
    assert len(tx) == 149_903 and tx["customer_id"].nunique() == 592  # README of the shared data
    assert store.currency is None and store.derived_dates
    orders = pd.read_csv(shared_data / "instacart_sample" / "orders.csv")
    first = orders.sort_values(["user_id", "order_number"]).groupby("user_id").head(2)
    user1 = first[first["user_id"] == 1]
    days = int(user1["days_since_prior_order"].fillna(0).sum())
    hour = int(user1["order_hour_of_day"].iloc[1])
    second = tx[tx["order_id"] == str(user1["order_id"].iloc[1])]["order_date"].iloc[0]
    assert second == pd.Timestamp("2017-01-01") + pd.Timedelta(days=days, hours=hour)
    table = preflight(store)
    assert _status(table, "headline figures") == ("partial", "no prices in the data: money figures count items")
    assert _status(table, "when people shop")[0] == "partial"


# --------------------------------------------------------------------------------------------
# optional columns, duplicates
# --------------------------------------------------------------------------------------------
def _lines(n: int = 120) -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": [f"c{i % 60}" for i in range(n)], "order_id": [f"o{i // 2}" for i in range(n)],
        "order_date": pd.Timestamp("2025-01-01") + pd.to_timedelta([i // 2 for i in range(n)], unit="D"),
        "product_id": [f"p{i % 4}" for i in range(n)], "quantity": 1.0, "unit_price": 5.0,
    })


def test_products_without_names_are_fine():
    no_names = pd.DataFrame({"product_id": ["p0", "p1", "p2", "p3"], "category": ["a", "b", "a", "b"]})
    store = load_store({"transactions": _lines(), "products": no_names}, as_of="2025-04-01", pseudonymize=False)
    assert set(to_pandas(store.transactions)["category"]) == {"a", "b"}
    assert _status(preflight(store), "what they buy") == ("partial", "no product names: products shown by id")
    some = no_names.assign(name=["Apple", None, "Pear", None])
    store = load_store({"transactions": _lines(), "products": some}, as_of="2025-04-01", pseudonymize=False)
    assert store.products["name"].isna().sum() == 2 and _status(preflight(store), "what they buy")[0] == "ok"


def test_duplicates_drop_with_a_warning_or_keep():
    lines = _lines()
    marketplace = pd.concat([lines, lines.iloc[:4]], ignore_index=True)  # one line per item: 4 genuine repeats
    dropped = load_store(marketplace, as_of="2025-04-01", pseudonymize=False)
    r = _rules(dropped.quality)
    assert r["duplicate_line"] == 4 and r["rows_out"] == 120
    assert "WARNING" in _detail(dropped.quality, "duplicate_line") and "duplicates='keep'" in _detail(dropped.quality, "duplicate_line")
    assert any(n.startswith("Duplicates:") for n in dropped.notes)
    kept = load_store(marketplace, as_of="2025-04-01", pseudonymize=False, duplicates="keep")
    assert _rules(kept.quality)["rows_out"] == 124 and _rules(kept.quality)["duplicate_line"] == 4
    assert to_pandas(kept.transactions)["amount"].sum() == marketplace["quantity"].mul(marketplace["unit_price"]).sum()
    # varied quantities (a retailer): duplicates are dropped without the one-line-per-item warning
    retail = marketplace.assign(quantity=[1.0, 2.0, 3.0, 6.0] * 31)
    assert "WARNING" not in _detail(load_store(retail, as_of="2025-04-01", pseudonymize=False).quality, "duplicate_line")
    with pytest.raises(DataContractError, match="duplicates must be 'drop' or 'keep'"):
        load_store(marketplace, as_of="2025-04-01", pseudonymize=False, duplicates="merge")


# --------------------------------------------------------------------------------------------
# data config
# --------------------------------------------------------------------------------------------
def _marketplace(folder: Path) -> Path:
    """Files laid out like the Olist export that configs/data_example.yaml maps, and the config."""
    folder.mkdir(parents=True, exist_ok=True)
    items = pd.DataFrame({"order_id": ["A", "A", "B", "C", "D", "E"], "order_item_id": [1, 2, 1, 1, 1, 1],
                          "product_id": ["x", "x", "y", "x", "z", "y"], "seller_id": "s1",
                          "shipping_limit_date": "2018-01-10", "price": [10.0, 10.0, 25.5, 10.0, 7.0, 25.5], "freight_value": 3.0})
    orders = pd.DataFrame({"order_id": ["A", "B", "C", "D"], "customer_id": ["k1", "k2", "k3", "k4"], "order_status": "delivered",
                           "order_purchase_timestamp": ["2018-01-02 10:00:00", "2018-02-03 11:00:00", "2018-03-04 12:00:00",
                                                        "2018-03-05 13:00:00"]})
    customers = pd.DataFrame({"customer_id": ["k1", "k2", "k3", "k4"], "customer_unique_id": ["u1", "u2", "u1", "u3"],
                              "customer_state": ["SP", "RJ", "SP", "MG"]})
    products = pd.DataFrame({"product_id": ["x", "y", "z"], "product_category_name": ["beleza_saude", "esporte_lazer", "beleza_saude"]})
    reviews = pd.DataFrame({"review_id": ["r1", "r2"], "order_id": ["A", "B"], "review_score": [5, 2],
                            "review_comment_message": [None, "atrasado"], "review_creation_date": ["2018-01-12", "2018-02-15"]})
    for name, df in (("order_items", items), ("orders", orders), ("customers", customers), ("products", products),
                     ("order_reviews", reviews)):
        df.to_csv(folder / f"{name}.csv", index=False)
    shutil.copy(ROOT / "configs" / "data_example.yaml", folder / "data.yaml")
    return folder / "data.yaml"


def test_the_example_data_config_loads_a_marketplace(tmp_path):
    store = load_store(_marketplace(tmp_path / "shop"), as_of="2018-06-01", pseudonymize=False)
    assert store.currency == "BRL" and store.name == "marketplace"
    tx = to_pandas(store.transactions).sort_values(["order_id", "customer_id"])
    assert tx["customer_id"].tolist() == ["u1", "u1", "u2", "u1", "u3"]  # the person, through orders and customers
    assert _rules(store.quality)["duplicate_line"] == 1 and len(tx) == 5  # the two identical items of order A are kept
    assert _rules(store.quality)["missing_customer_id"] == 1  # order E is not in orders.csv: counted, not lost
    assert tx["quantity"].eq(1).all() and set(tx["channel"]) == {"online"} and set(tx["store_id"]) == {"s1"}
    assert tx["order_date"].min() == pd.Timestamp("2018-01-02 10:00")
    assert dict(zip(store.customers["customer_id"], store.customers["region"])) == {"u1": "SP", "u2": "RJ", "u3": "MG"}
    assert store.feedback.sort_values("timestamp")["customer_id"].tolist() == ["u1", "u2"]
    assert store.feedback["csat"].tolist() == [5, 2]
    table = preflight(store)
    assert _status(table, "NPS per persona") == ("skipped", "feedback has no NPS")
    assert _status(table, "voice of the customer") == ("partial", "feedback has no NPS")
    assert _status(table, "CSAT per persona")[0] == "ok" and _status(table, "comment themes")[0] == "ok"
    assert "no product names: products shown by id" in _status(table, "favourite categories and products")[1]


def test_data_config_errors_are_clear(tmp_path):
    config = _marketplace(tmp_path / "shop")
    text = config.read_text()
    config.write_text(text + "colour: blue\n")
    with pytest.raises(DataContractError, match=r"unknown keys \['colour'\]"):
        load_store(config, as_of="2018-06-01", pseudonymize=False)
    config.write_text(text.replace("path: order_items.csv", "path: nowhere.csv"))
    with pytest.raises(DataContractError, match="transactions: .*nowhere.csv not found"):
        load_store(config, as_of="2018-06-01", pseudonymize=False)
    config.write_text(text.replace("on: order_customer_id\n        columns: {customer_id: order_customer_id, customer_unique_id: customer_id}\n  customers:",
                                   "on: customer_unique_id\n        columns: {customer_id: order_customer_id}\n  customers:"))
    with pytest.raises(DataContractError, match="has no column 'customer_unique_id'|the key is not unique"):
        load_store(config, as_of="2018-06-01", pseudonymize=False)
    (tmp_path / "shop" / "customers.csv").write_text("customer_id,customer_unique_id,customer_state\nk1,u1,SP\nk1,u9,SP\n")
    config.write_text(text)
    with pytest.raises(DataContractError, match=r"the key is not unique in customers.csv \(1 repeated keys\)"):
        load_store(config, as_of="2018-06-01", pseudonymize=False)


# --------------------------------------------------------------------------------------------
# preflight and `segmentation check`
# --------------------------------------------------------------------------------------------
def test_preflight_on_the_synthetic_store_shows_everything():
    store = load_store("synthetic", n_customers=300, random_state=2)
    table = preflight(store)
    assert set(table.columns) == {"report", "section", "status", "reason"}
    assert table["report"].str[:2].drop_duplicates().tolist() == ["01", "02", "03", "04", "05", "06", "07"]
    assert (table["status"] == "ok").all(), table[table["status"] != "ok"]


def test_preflight_names_each_gap():
    # 100 customers, only one buys twice; one product per order; the data start 2 months before as_of
    one_timers = pd.DataFrame({"customer_id": [f"c{i}" for i in range(100)] + ["c0"],
                               "order_id": [f"o{i}" for i in range(101)],
                               "order_date": pd.Timestamp("2025-01-01") + pd.to_timedelta(list(range(50)) * 2 + [55], unit="D"),
                               "product_id": [f"p{i % 3}" for i in range(101)], "quantity": 1.0,
                               "unit_price": [3.0, 4.5] * 50 + [3.0]})
    feedback = pd.DataFrame({"customer_id": ["c1", "c2"], "timestamp": ["2025-01-10", "2025-01-11"], "csat": [4, 5]})
    store = load_store({"transactions": one_timers, "feedback": feedback}, as_of="2025-03-01", pseudonymize=False)
    table = preflight(store)
    status, reason = _status(table, "lifetime value (BG/NBD, Gamma-Gamma)")
    assert status == "skipped" and "only 1 of 100 customers (1.0%) bought twice" in reason
    assert MIN_REPEAT_SHARE == 0.02
    assert _status(table, "RFM segments")[0] == "partial"
    assert _status(table, "co-purchase rules") == ("skipped", "no order has two or more products")
    assert _status(table, "segment migration")[0] == "skipped" and "after the comparison date 2024-09-01" in _status(table, "segment migration")[1]
    assert _status(table, "funnels") == ("skipped", "no events table")
    assert _status(table, "demographics")[1] == "no customers table" and _status(table, "key dates")[0] == "skipped"
    assert _status(table, "NPS per persona") == ("skipped", "feedback has no NPS")
    assert _status(table, "seasonality and peak months")[0] == "skipped"
    assert _status(table, "headline figures") == ("partial", "currency unknown: money shown without a currency (set currency)")


def test_check_command_prints_the_mapping_quality_and_preflight(tmp_path, capsys):
    config = _marketplace(tmp_path / "shop")
    assert main(["check", "--source", str(config), "--as-of", "2018-06-01"]) == 0
    out = capsys.readouterr().out
    assert "source: marketplace; analysis date 2018-06-01; currency BRL" in out
    assert "transactions" in out and "customers" in out and "rows read" in out
    assert "what the reports can show" in out and "NPS per persona" in out
    assert main(["check", "--source", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: as_of is required") and "\n" not in err
    assert main(["check", "--source", str(tmp_path / "missing.csv"), "--as-of", "2018-06-01"]) == 2
    assert "file not found" in capsys.readouterr().err
