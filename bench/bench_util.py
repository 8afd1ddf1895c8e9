"""Shared by the PyTorch bench scripts: the RESULT lines that `igpt bench` / `igpt train-bench` print."""


def read_results(path, prefix, log=print):
    """The key=value fields of every line of `path` that starts with `prefix` (e.g. "RESULT igpt-train"),
    one dict per line; [] when path is empty or unreadable (said through log)."""
    rows = []
    if not path:
        return rows
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(prefix + " "):
                    rows.append(dict(tok.split("=", 1) for tok in line.split()[2:] if "=" in tok))
    except OSError as e:
        log(f"igpt results: {e}")
    return rows


def write_json(path, rows):
    """The table's rows as JSON, when a path was given."""
    if path:
        import json

        with open(path, "w") as f:
            json.dump(rows, f, indent=1)
