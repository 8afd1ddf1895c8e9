// Backend selection. The CUDA backend (src/cuda/) registers here when compiled in (IGPT_WITH_CUDA).
#include "backend.h"
#include "error.h"
#ifdef IGPT_WITH_CUDA
#include "cuda/backend_cuda.h"  // defines cuda_available()
#endif

namespace igpt {

#ifndef IGPT_WITH_CUDA
bool cuda_available() { return false; }
#endif

std::unique_ptr<Backend> make_backend(BackendKind kind, const Model& model, int32_t threads) {
    switch (kind) {
        case BackendKind::Cpu: return make_cpu_backend(model, threads);
        case BackendKind::Cuda:
#ifdef IGPT_WITH_CUDA
            return make_cuda_backend(model, cuda_default_precision());
#else
            throw Error("this build of igpt has no CUDA backend (use --device cpu)");
#endif
    }
    throw Error("unknown backend");
}

}  // namespace igpt
