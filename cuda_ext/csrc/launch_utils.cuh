// Host-side helpers of the launchers (.cu files only: this header includes the CUDA runtime).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace avatar_cuda {

constexpr int kThreadsPerBlock = 256;

inline cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

inline unsigned int blocks_for(int64_t n) {
    return static_cast<unsigned int>((n + kThreadsPerBlock - 1) / kThreadsPerBlock);
}

// Throws with CUDA's message when the last launch (or an earlier asynchronous error) failed.
inline void check_launch(const char* kernel) {
    const cudaError_t status = cudaGetLastError();
    if (status != cudaSuccess) {
        throw std::runtime_error(std::string(kernel) + " failed: " + cudaGetErrorString(status));
    }
}

}  // namespace avatar_cuda
