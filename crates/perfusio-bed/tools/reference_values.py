"""Independent reference values for the tests of `perfusio-gp/src/special.rs` and
`perfusio-bed/src/analytic.rs`.

Every value is computed with mpmath at 80 significant digits from the exact binary value of
the double argument, and printed as the nearest double (shortest round-trip form).

    python3 reference_values.py     # needs mpmath
"""
import mpmath as mp

mp.mp.dps = 80


def show(name, xs, f):
    print(f"// {name}")
    for x in xs:
        v = f(mp.mpf(x))
        print(f"    ({x!r}, {float(v)!r}),")  # shortest round-trip doubles


def erfcx(x):
    return mp.exp(x * x) * mp.erfc(x)


def log_h(z):
    # log(phi(z) + z Phi(z)), the standardised log expected improvement; the sum cancels
    # to about 1/z^2 of phi(z), so the working precision grows with log10(z^2)
    with mp.workdps(80 + 2 * int(mp.log10(abs(z) + 1))):
        return mp.log(mp.npdf(z) + z * mp.ncdf(z))


def ppf(p):
    guess = float(mp.sqrt(2) * mp.erfinv(2 * p - 1)) if 1e-12 < p < 1 - 1e-12 else None
    if guess is None:
        # tails: solve log Phi(x) = log p
        if p < 0.5:
            return mp.findroot(lambda x: mp.log(mp.ncdf(x)) - mp.log(p), -mp.sqrt(-2 * mp.log(p)))
        q = 1 - p
        return -mp.findroot(lambda x: mp.log(mp.ncdf(x)) - mp.log(q), -mp.sqrt(-2 * mp.log(q)))
    return mp.findroot(lambda x: mp.ncdf(x) - p, guess)


show("erfcx", [0.0, 1e-10, 0.1, 0.3, 0.49, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 3.9, 4.0, 5.5, 8.0,
               10.0, 26.0, 100.0, 1e4, 1e8, 1e60, -1e-8, -0.2, -0.5, -1.0, -3.0, -10.0, -26.0],
     erfcx)
show("erfc", [0.0, 0.2, 0.49, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 26.0, -0.3, -2.0], mp.erfc)
show("erf", [1e-12, 0.01, 0.2, 0.49, 0.5, 0.8, 1.5, 3.0, -0.4, -2.0], mp.erf)
show("norm_cdf", [-38.0, -20.0, -8.0, -3.0, -1.0, -0.5, -1e-9, 0.0, 0.3, 1.0, 2.5, 7.0],
     mp.ncdf)
show("log_norm_cdf", [-1e4, -1000.0, -40.0, -10.0, -2.0, 0.0, 2.0, 10.0],
     lambda x: mp.log(mp.ncdf(x)))
show("norm_ppf", [1e-300, 1e-100, 1e-20, 1e-10, 1e-5, 0.001, 0.02, 0.02425, 0.1, 0.25, 0.3,
                  0.4999, 0.5 - 2.0**-40, 0.5 + 2.0**-40, 0.6, 0.75, 0.9, 0.975, 0.99,
                  1 - 1e-10, 1 - 2.0**-53],
     ppf)
show("log_h", [8.0, 2.0, 0.5, 0.0, -0.5, -0.999, -1.0, -1.001, -2.0, -4.0, -5.99, -6.0,
               -10.0, -20.0, -38.0, -40.0, -100.0, -1e3, -1e4, -1e8, -1e100],
     log_h)
