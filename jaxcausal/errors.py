"""The one exception type that reaches users as a single line and exit code 2."""


class InputError(Exception):
    """Bad user input (file, flag, config value).

    The message is one sentence naming the thing (file, flag, shape, value) and what to do;
    the command-line entry points print it on stderr and exit with code 2, no traceback.
    """
