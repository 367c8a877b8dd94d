/* Floating point: libm, printf's %a/%.17g/%e/%f/%g, strtod and sscanf round trips, long
 * double (x87 precision control) and rounding modes. Standard C only, so that the same file
 * built for the host with the same C library prints the same bytes: results must be
 * bit-identical (tests/kvm/test_libc.py). */
#include <fenv.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef double (*fn1)(double);
static const struct { const char *name; fn1 f; } unary[] = {
    {"sin", sin}, {"cos", cos}, {"tan", tan}, {"asin", asin}, {"acos", acos}, {"atan", atan},
    {"sinh", sinh}, {"cosh", cosh}, {"tanh", tanh}, {"exp", exp}, {"exp2", exp2},
    {"expm1", expm1}, {"log", log}, {"log2", log2}, {"log10", log10}, {"log1p", log1p},
    {"sqrt", sqrt}, {"cbrt", cbrt}, {"erf", erf}, {"erfc", erfc}, {"tgamma", tgamma},
    {"lgamma", lgamma}, {"floor", floor}, {"ceil", ceil}, {"trunc", trunc}, {"round", round},
    {"rint", rint}, {"nearbyint", nearbyint},
};

static const char *const decimals[] = {
    "0.1", "0.2", "0.3", "1e-310", "4.9e-324", "2.2250738585072011e-308", "1.7976931348623157e308",
    "123456789012345678901234567890", "3.141592653589793238462643383279", "0x1.fffffffffffffp+1023",
    "-0.0", "1e23", "8.589973e9", "2.5e-3", "9007199254740993", "inf", "-inf", "nan",
};

int main(void)
{
    for (unsigned i = 0; i < sizeof unary / sizeof unary[0]; i++)
        for (int k = 0; k < 12; k++) {
            double x = k * 0.73 - 3.1;
            printf("%s(%a) = %a\n", unary[i].name, x, unary[i].f(x));
        }
    for (int k = 0; k < 10; k++) {
        double x = k * 1.37 - 4.2, y = 2.5 - k * 0.61;
        printf("pow %a atan2 %a hypot %a fmod %a remainder %a fma %a\n", pow(fabs(x), y), atan2(x, y),
               hypot(x, y), fmod(x, y), remainder(x, y), fma(x, y, 0.1));
        printf("float sinf %a expf %a powf %a logf %a\n", (double)sinf((float)x), (double)expf((float)y),
               (double)powf(fabsf((float)x), (float)y), (double)logf(fabsf((float)x) + 1));
    }
    for (unsigned i = 0; i < sizeof decimals / sizeof decimals[0]; i++) {
        double d = strtod(decimals[i], NULL), again, scanned = 0;
        char buf[64];
        snprintf(buf, sizeof buf, "%.17g", d);
        again = strtod(buf, NULL);
        sscanf(decimals[i], "%lf", &scanned);
        printf("strtod(%s) = %a %.17g %e %f %g round-trip=%d sscanf=%a\n", decimals[i], d, d, d, d, d,
               memcmp(&again, &d, sizeof d) == 0, scanned);
    }
    long double third = 1.0L / 3, root = sqrtl(2.0L);
    printf("long double: %La %La %La %La %.21Lg\n", third, root, expl(1.0L), sinl(1.0L), third);
    static const struct { const char *name; int mode; } modes[] = {
        {"nearest", FE_TONEAREST}, {"upward", FE_UPWARD}, {"downward", FE_DOWNWARD}, {"toward-zero", FE_TOWARDZERO},
    };
    for (unsigned i = 0; i < 4; i++) {
        fesetround(modes[i].mode);
        volatile double one = 1.0, three = 3.0, big = 1e308;
        printf("round %s: %a %a %a\n", modes[i].name, one / three, -one / three, big * 10);
    }
    fesetround(FE_TONEAREST);
    volatile double zero = 0.0;
    feclearexcept(FE_ALL_EXCEPT);
    double inf = 1.0 / zero;
    printf("div-by-zero %a raised=%d\n", inf, fetestexcept(FE_DIVBYZERO) != 0);
    printf("epsilon %a max %a min %a dig %d\n", DBL_EPSILON, DBL_MAX, DBL_MIN, DBL_DIG);
    return 0;
}
