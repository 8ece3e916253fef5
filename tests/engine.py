"""Run SQL against a store directory with the real engine, in its own process.

chDB allows one engine path per process, so tests never open a store inside
the pytest process; they call this instead. Prints the result rows as JSON.

    python tests/engine.py DATA_DIR "SQL" ["SQL" ...]
"""

import json
import sys

import clickhouse_connect


def main() -> None:
    data_dir, statements = sys.argv[1], sys.argv[2:]
    client = clickhouse_connect.get_client(dsn=f"chdb://{data_dir}")
    out = []
    for sql in statements:
        result = client.query(sql)
        out.append([[v.hex() if isinstance(v, bytes) else v for v in row]
                    for row in result.result_rows])
    json.dump(out, sys.stdout, default=str)


if __name__ == "__main__":
    main()
