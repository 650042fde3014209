"""The error every layer raises for unusable input: the CLI prints it as one line (exit status 2),
the app shows it as a message, batch commands report it per file and go on."""


class InputError(ValueError):
    """A user-supplied input cannot be used; the message is meant for the user as is."""


class MetricUnavailable(RuntimeError):
    """A measurement cannot run here (its model or parameters are absent). Results show it as "not
    available" with ``reason``, never as a number; ``remedy`` says how to get what is missing."""

    def __init__(self, reason: str, remedy: str = ""):
        super().__init__(f"{reason}; {remedy}" if remedy else reason)
        self.reason, self.remedy = reason, remedy
