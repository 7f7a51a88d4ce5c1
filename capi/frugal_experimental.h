/* frugal_experimental.h - the experimental part of frugal's C API: functions named frugalx_* and
 * enums named FRUGALX_*. Unlike frugal.h, nothing here is stable: any minor release may change or
 * remove it (docs/ABI.md), and the ABI check leaves it out (cmake/abi/suppressions.txt). Ideas
 * graduate into frugal.h under a frugal_* name once their shape has settled.
 * Same conventions as frugal.h (status codes, frugal_error, C89 clean). Include after frugal.h. */
#ifndef FRUGAL_EXPERIMENTAL_H
#define FRUGAL_EXPERIMENTAL_H

#include "frugal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How a deepseek2 (MLA) session computes attention (docs/DEEPSEEK2.md): AUTO picks per call by
   cost; STRAIGHTFORWARD decompresses K/V per head (fast prefill); ABSORBED attends over the latent
   cache directly (fast decode). The logits agree within float rounding. */
enum { FRUGALX_MLA_AUTO = 0, FRUGALX_MLA_STRAIGHTFORWARD = 1, FRUGALX_MLA_ABSORBED = 2 };
/* FRUGAL_ERR_INVALID_ARGUMENT for another value or a model that is not deepseek2. */
FRUGAL_API frugal_status frugalx_session_set_mla_form(frugal_session * session, int32_t form, frugal_error ** err);

/* The arithmetic of a deepseek2 session's attention (over decompressed heads in the
   STRAIGHTFORWARD form, which prompts take; over the latent cache in the ABSORBED form, where a
   step has many heads, as V3's 128 decoding): F32 keeps the products exact; BF16 rounds queries,
   keys, values and softmax weights to BF16 and multiplies them with F32 sums, about twice F32's
   speed, as DeepSeek's own inference computes attention in BF16 (F32 where the CPU lacks AVX-512
   BF16), which moves the logits several times more than llama.cpp's rounding does; AUTO (the
   default) is F32. FRUGAL_ERR_INVALID_ARGUMENT for another value or a model that is not
   deepseek2. */
enum { FRUGALX_MLA_ATTENTION_AUTO = 0, FRUGALX_MLA_ATTENTION_F32 = 1, FRUGALX_MLA_ATTENTION_BF16 = 2 };
FRUGAL_API frugal_status frugalx_session_set_mla_attention(frugal_session * session, int32_t arithmetic,
                                                           frugal_error ** err);

/* How prompts multiply weights that are not F32 (docs/PERF.md); decode is unaffected.
   AUTO (the default): Q8 where the CPU has AVX-512 VNNI or AVX2 (for the weight types it takes
   there; the others as below), BF16 where the CPU runs BF16 matrix products natively
   (AVX512-BF16, AMX), else F32; and on CPUs with AMX, BF16 for each product of 96 prompt rows
   or more (128 for K-quants, 48 for F16).
   F32: weights dequantized to F32, activations rounded as decode rounds them.
   BF16: weights and activations rounded to BF16, about twice F32's speed where native; on other
   CPUs emulated in F32 (same numbers, slow). F16 weights stay on F32 but on AMX, where weights
   and activations are split into two BF16 parts each (within about 2^-17 of each exact
   product). INT8: 4- and 5-bit weights (Q4_0, Q5_0, IQ4_NL,
   Q4_K, Q5_K) requantized for an int8 GEMM, about 1.9x F32's speed on AVX2, next-token KL
   divergence 2-3 % above F32's; other weights as AUTO. Q8: Q4_0, Q4_1, Q5_0, Q5_1 and the
   K-quants Q2_K to Q6_K (and Q8_0, IQ4_NL and IQ4_XS with VNNI) in F32's arithmetic (llama.cpp's)
   with integer block sums, on AVX-512 VNNI or AVX2 (F32 itself elsewhere, and for Q8_0, IQ4_NL
   and IQ4_XS on AVX2 without VNNI); other weights as AUTO.
   FRUGAL_ERR_INVALID_ARGUMENT for another value. */
enum {
    FRUGALX_PREFILL_AUTO = 0,
    FRUGALX_PREFILL_F32 = 1,
    FRUGALX_PREFILL_BF16 = 2,
    FRUGALX_PREFILL_INT8 = 3,
    FRUGALX_PREFILL_Q8 = 4
};
FRUGAL_API frugal_status frugalx_session_set_prefill_gemm(frugal_session * session, int32_t gemm, frugal_error ** err);

#ifdef __cplusplus
}
#endif
#endif /* FRUGAL_EXPERIMENTAL_H */
