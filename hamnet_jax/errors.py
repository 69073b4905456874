"""The one exception type for bad user input.

Every check of a config, a schema, a data file or a batch raises `InputError` with a
message that names what is wrong (field, column, row, expected shape). It subclasses
`ValueError` so library users can catch it the usual way; the CLI turns it into exit
code 2 with a one-line message on stderr.
"""


class InputError(ValueError):
    """Bad user input: the message names the field, column, row or shape at fault."""
