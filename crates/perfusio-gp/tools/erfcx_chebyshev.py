"""Chebyshev coefficients of y(t) = (1 + 2x) * erfcx(x) on 0 <= x < inf, t = (x - K)/(x + K).

Regenerates the table `ERFCX_CHEB` of `src/special.rs` (K = 4). The expansion idea is
Shepherd & Laframboise (1981), Math. Comp. 36(153):249-253, doi:10.2307/2007741; the
coefficients here are computed afresh by Chebyshev-Gauss quadrature at 60 digits.

    python3 erfcx_chebyshev.py     # needs mpmath
"""
import mpmath as mp

mp.mp.dps = 60
K = mp.mpf(4)
N = 200  # quadrature nodes


def y(t):
    x = K * (1 + t) / (1 - t)
    return (1 + 2 * x) * mp.exp(x * x) * mp.erfc(x)


theta = [mp.pi * (j + mp.mpf(1) / 2) / N for j in range(N)]
values = [y(mp.cos(th)) for th in theta]
coeffs = [2 * mp.fsum(values[j] * mp.cos(k * theta[j]) for j in range(N)) / N for k in range(N)]
last = max(i for i, c in enumerate(coeffs) if abs(c) > 2e-18)
for c in coeffs[: last + 1]:
    print(f"    {float(c)!r},")  # shortest round-trip double
