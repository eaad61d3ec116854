"""How many inputs each fuzzer tries: 100 each in the default suite, COCLABEL_FUZZ_EXAMPLES
(`make fuzz`: 10,000) for a long run. `--hypothesis-show-statistics` prints the counts."""

import os

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("COCLABEL_FUZZ_EXAMPLES", "100"))

fuzz = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 100,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])
