// Backend selection. The CUDA backend (its own issue) registers here when compiled in.
#include "backend.h"
#include "error.h"

namespace igpt {

#ifndef IGPT_WITH_CUDA
bool cuda_available() { return false; }
#endif

std::unique_ptr<Backend> make_backend(BackendKind kind, const Model& model, int32_t threads) {
    switch (kind) {
        case BackendKind::Cpu: return make_cpu_backend(model, threads);
        case BackendKind::Cuda:
            throw Error("this build of igpt has no CUDA backend (use --device cpu)");
    }
    throw Error("unknown backend");
}

}  // namespace igpt
