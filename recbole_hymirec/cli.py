"""What every command line of the plugin shares: ``--key=value`` overrides, one-line errors."""
import json
import os
import sys

# Set once a command of this plugin has put its --key=value overrides into sys.argv: from
# then on (spawned ranks inherit the environment) Config refuses an unknown key there.
ARGV_OVERRIDES_ENV = "RECBOLE_HYMIREC_ARGV_OVERRIDES"


def split_overrides(extra):
    """Check that every argument left after argparse is ``--key=value``; return them."""
    bad = [a for a in extra if not (a.startswith("--") and "=" in a)]
    if bad:
        raise SystemExit(
            f"error: cannot read argument(s) {' '.join(bad)}: config overrides are written "
            f"--key=value (e.g. --epochs=5)."
        )
    return extra


def hand_overrides_to_recbole(extra):
    """RecBole's Config reads ``--key=value`` from sys.argv (spawned ranks inherit it)."""
    sys.argv = [sys.argv[0]] + split_overrides(extra)
    os.environ[ARGV_OVERRIDES_ENV] = "1"


def is_user_error(err):
    """True for the plugin's errors, which carry the problem and the fix in their message.

    Looked up in sys.modules because the failing import may be the package itself
    (e.g. numpy 2 installed): its errors module is loaded before the check runs.
    """
    errors = sys.modules.get("recbole_hymirec.errors")
    return errors is not None and isinstance(err, errors.HyMiRecError)


def run_reporting_user_errors(job):
    """``job()``'s return value, or 2 after printing a user error as one line."""
    try:
        return job()
    except Exception as err:  # noqa: BLE001 - user errors become one line, others re-raise
        if not is_user_error(err):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2


def run_report_command(parser, argv, tag, make_report, overrides=True):
    """The body of a report command: parse ``argv`` (with ``overrides``, what argparse leaves
    must be ``--key=value`` and goes to RecBole), print one line ``TAG {json}`` of
    ``make_report(args, config_files)``; a user error is one line and exit code 2."""
    if overrides:
        args, extra = parser.parse_known_args(argv)
        hand_overrides_to_recbole(extra)
    else:
        args = parser.parse_args(argv)
    files = getattr(args, "config_files", None)
    config_files = files.split() if files else None

    def job():
        print(f"{tag} " + json.dumps(make_report(args, config_files), sort_keys=True))
        return 0

    return run_reporting_user_errors(job)
