"""The error every layer raises for unusable input: the CLI prints it as one line (exit status 2),
the app shows it as a message, batch commands report it per file and go on."""


class InputError(ValueError):
    """A user-supplied input cannot be used; the message is meant for the user as is."""
