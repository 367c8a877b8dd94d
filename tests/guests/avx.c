/* AVX at CPL 3 when the CPU has it: the boot entry must have set CR4.OSXSAVE and XCR0's
 * SSE and AVX bits, else the first VEX instruction is #UD. Prints what CPUID and XGETBV say,
 * then, with AVX, a 256-bit addition. Only avx_sum is compiled for AVX, so the image runs
 * on any x86-64 CPU. */
#include <cpuid.h>
#include <immintrin.h>
#include <stdio.h>

__attribute__((target("avx"), noinline)) static void avx_sum(double out[4])
{
    __m256d x = _mm256_set_pd(1.5, 2.5, 3.5, 4.5);
    _mm256_storeu_pd(out, _mm256_add_pd(x, x));
}

__attribute__((target("xsave"))) static unsigned long long xcr0(void) { return _xgetbv(0); }

int main(void)
{
    unsigned a, b, c, d;
    __cpuid(1, a, b, c, d);
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    unsigned long long x = osxsave ? xcr0() : 0;
    printf("osxsave=%d avx=%d xcr0_sse_avx=%llu\n", osxsave, avx, x & 6);
    if (avx) {
        double out[4];
        avx_sum(out);
        printf("avx_sum=%g %g %g %g\n", out[0], out[1], out[2], out[3]);
    }
    return 0;
}
