// Configure-time check (CMakeLists.txt, IGPT_AVX512=AUTO): exits 0 when this CPU and OS run AVX-512 F/DQ/VL/BW.
#include <immintrin.h>

int main() {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512dq") ||
        !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512bw"))
        return 1;
    volatile float in = 2.0f;
    const __m512 x = _mm512_set1_ps(in);
    const __m512 y = _mm512_fmadd_ps(x, x, x);  // 6 in every lane
    return _mm512_reduce_add_ps(y) == 96.0f ? 0 : 1;
}
