"""The README's role table and the permission table (web/auth/accounts.py) say the
same: which permissions exist, what each covers and which roles have it."""

from __future__ import annotations

from pathlib import Path

from aitrail_collector.web.auth.accounts import PERMISSIONS, ROLES

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_roles() -> tuple[list[str], dict[str, tuple[set[str], str]]]:
    """(roles in column order, permission -> (roles marked yes, what it covers)), read
    from the README's table whose header starts with '| permission | what it covers |'."""
    lines = README.read_text("utf-8").splitlines()
    start = next(i for i, line in enumerate(lines)
                 if line.startswith("| permission | what it covers |"))
    cells = [c.strip() for c in lines[start].strip("|").split("|")]
    roles = [c.strip("`") for c in cells[2:]]
    table: dict[str, tuple[set[str], str]] = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        name, what, *marks = [c.strip() for c in line.strip().strip("|").split("|")]
        assert all(m in ("yes", "no") for m in marks), line
        table[name.strip("`")] = ({r for r, m in zip(roles, marks) if m == "yes"}, what)
    return roles, table


def test_readme_role_table_matches_the_permission_table():
    roles, table = readme_roles()
    assert roles == list(ROLES)
    assert list(table) == list(PERMISSIONS)
    for permission, (have, what) in PERMISSIONS.items():
        assert table[permission] == (set(have), what), permission


def test_only_auditors_and_admins_verify():
    # The decision both tables record: proving integrity is the auditor's evidence,
    # not something the analyst reading the charts does.
    _, table = readme_roles()
    assert table["verify"][0] == {"auditor", "admin"}
    assert "analyst" not in PERMISSIONS["verify"][0]
