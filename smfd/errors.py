"""The error every layer raises for unusable input: the CLI prints it as one line (exit status 2),
the app shows it as a message, batch commands report it per file and go on."""


class InputError(ValueError):
    """A user-supplied input cannot be used; the message is meant for the user as is."""


def message_of(exc: BaseException) -> str:
    """An error's message for the user. An InputError raised in a DataLoader worker (a face that
    cannot be read, found mid-epoch) comes back wrapped in the worker's traceback; its own message
    is the traceback's last line, after the class name."""
    text = str(exc)
    if "Original Traceback" in text:
        last = text.strip().splitlines()[-1]
        text = last.split(": ", 1)[-1]
    return text


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An error's message as one line for a log or a user: its first non-empty line (some messages,
    torch's or a worker's traceback, run to dozens), at most ``limit`` characters, " ..." where more
    was left out; the class name when there is no message."""
    lines = [line.strip() for line in message_of(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    first = lines[0][:limit]
    return first + (" ..." if len(lines) > 1 or len(lines[0]) > limit else "")


class MetricUnavailable(RuntimeError):
    """A measurement cannot run here (its model or parameters are absent). Results show it as "not
    available" with ``reason``, never as a number; ``remedy`` says how to get what is missing."""

    def __init__(self, reason: str, remedy: str = ""):
        super().__init__(f"{reason}; {remedy}" if remedy else reason)
        self.reason, self.remedy = reason, remedy
