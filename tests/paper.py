"""The paper's token sampling in plain Python (Fayyaz et al., ECCV 2022, Eq. 4-5 and Sec. 4).

Test references share these; nothing here imports the library.
"""

import bisect
import math


def naive_sample(scores, k):
    """Eq. 4-5 of the paper, one row, plain Python: the set of kept token indices."""
    s = [float(v) for v in scores]
    if sum(s) == 0:
        s = [1.0] * len(s)
    cdf, total = [], 0.0
    for v in s:
        total += v
        cdf.append(total)
    cdf = [c / cdf[-1] for c in cdf]
    kept = set()
    for m in range(1, k + 1):
        u = (2 * m - 1) / (2 * k)
        kept.add(min(bisect.bisect_left(cdf, u), len(cdf) - 1))  # the first j with cdf[j] >= u
    return kept


def naive_budget(k, n):
    return k if isinstance(k, int) else max(math.floor(k * n + 0.5), 8)
