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

/* on = 1: prompts on 4- and 5-bit weights (Q4_0, Q5_0, IQ4_NL, Q4_K, Q5_K) go through an int8
   GEMM instead of F32 (docs/PERF.md): about 1.9x faster prefill on an AVX2 machine, at a
   next-token KL divergence 2-3 % above the default's. on = 0 (the default) restores exact
   prefill. Decode is unaffected. FRUGAL_ERR_INVALID_ARGUMENT for another value. */
FRUGAL_API frugal_status frugalx_session_set_int8_prefill(frugal_session * session, int32_t on, frugal_error ** err);

#ifdef __cplusplus
}
#endif
#endif /* FRUGAL_EXPERIMENTAL_H */
