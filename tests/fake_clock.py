"""A clock tests move by hand, for time to live (connect(clock=...))."""

T0 = 1_000_000.0          # the fake clock's start: seconds since the epoch


class FakeClock:
    """A clock tests move by hand; called like time.time."""

    def __init__(self, now=T0):
        self.now = now
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.now

    def advance(self, seconds):
        self.now += seconds
