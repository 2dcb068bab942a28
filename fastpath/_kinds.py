"""Route kinds returned by ``RouteTable.match`` (identical in both implementations)."""

NO_MATCH = 0
RECORDS = 1
RECORD = 2
CURSOR = 3
CATALOG_ITEM = 4
SERVICE = 5

#: Static route kinds chosen by the caller must be at least this value.
STATIC_MIN = 100
