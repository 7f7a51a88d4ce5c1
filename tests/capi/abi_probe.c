/* abi_probe.c - a small stand-in for libfrugal in abi_break_test.sh: it exports functions whose
   signatures use every public struct of frugal.h, so building it against frugal.h and against a
   deliberately broken copy gives two libraries whose difference abidiff must call incompatible.
   -DPROBE_EXTRA adds one function (a compatible change). */
#include "frugal.h"

FRUGAL_API uint32_t frugal_probe_options(const frugal_model_options * o) { return o ? o->struct_size : 0u; }
FRUGAL_API size_t frugal_probe_message(const frugal_chat_message * m) { return m ? m->content_len : 0u; }
#ifdef PROBE_EXTRA
FRUGAL_API int32_t frugal_probe_extra(void) { return 1; }
#endif
