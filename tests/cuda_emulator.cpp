// Runs the CUDA kernels of cuda_ext/csrc on the CPU, so their indexing, batching, barriers and warp reductions
// are tested on machines without a GPU (tests/test_cuda_emulated.py builds this file with the host compiler and
// drives it through ctypes).
//
// Each thread block runs its threads as cooperative fibers on one OS thread, one block after another:
// __syncthreads and the warp intrinsics switch to the next fiber and resume a barrier's fibers once all of them
// (the block's or the warp's 32) have arrived; a barrier that can never complete is reported as a deadlock.
// __shared__ variables become function statics, which the block's fibers share. Atomics are plain updates (one
// OS thread). Math is the host's (glibc expf/logf differ from CUDA's by an ulp or two). Linux (glibc) only.
// Fibers switch stacks with _setjmp/_longjmp; glibc's fortified longjmp rejects jumps onto another stack.
#undef _FORTIFY_SOURCE
#include <setjmp.h>
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

struct dim3 {
    unsigned int x, y, z;
    dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

struct uint3 {
    unsigned int x, y, z;
};

namespace emu {

enum class State { Runnable, BlockBarrier, WarpBarrier, Done };

constexpr int kWarp = 32;
constexpr std::size_t kStackBytes = 256 * 1024;

struct Fiber {
    jmp_buf context;
    ucontext_t start;
    std::vector<char> stack;
    uint3 thread_idx;
    int linear = 0;
    State state = State::Runnable;
    bool started = false;
    int barrier_value = 0;
    unsigned int warp_calls = 0;  // picks the exchange buffer of the next warp call
};

struct Scheduler {
    std::vector<Fiber> fibers;
    jmp_buf home;
    Fiber* current = nullptr;
    std::function<void()> body;
    int barrier_count = 0;
    std::vector<float> float_exchange[2];
    std::vector<int> int_exchange[2];
    std::string error;
};

Scheduler scheduler;
uint3 block_idx;
dim3 block_dim;
dim3 grid_dim;

inline void fail(const std::string& message) {
    if (scheduler.error.empty()) {
        scheduler.error = message;
    }
}

inline void yield(State state) {
    Fiber* fiber = scheduler.current;
    fiber->state = state;
    if (_setjmp(fiber->context) == 0) {
        _longjmp(scheduler.home, 1);
    }
}

void fiber_main() {
    try {
        scheduler.body();
    } catch (const std::exception& error) {
        fail(error.what());
    }
    scheduler.current->state = State::Done;
    _longjmp(scheduler.home, 1);
}

inline void resume(Fiber* fiber) {
    scheduler.current = fiber;
    if (_setjmp(scheduler.home) == 0) {
        if (!fiber->started) {
            fiber->started = true;
            setcontext(&fiber->start);
        } else {
            _longjmp(fiber->context, 1);
        }
    }
}

inline uint3 thread_idx() { return scheduler.current->thread_idx; }

std::string where(const Fiber& fiber) {
    return "block (" + std::to_string(block_idx.x) + ", " + std::to_string(block_idx.y) + ", " +
           std::to_string(block_idx.z) + ") thread " + std::to_string(fiber.linear);
}

void run_block() {
    auto& fibers = scheduler.fibers;
    for (auto& fiber : fibers) {
        fiber.state = State::Runnable;
        fiber.started = false;
        fiber.warp_calls = 0;
        getcontext(&fiber.start);
        fiber.start.uc_stack.ss_sp = fiber.stack.data();
        fiber.start.uc_stack.ss_size = fiber.stack.size();
        fiber.start.uc_link = nullptr;
        makecontext(&fiber.start, fiber_main, 0);
    }
    const int count = static_cast<int>(fibers.size());
    while (true) {
        bool ran = false;
        for (auto& fiber : fibers) {
            if (fiber.state == State::Runnable) {
                resume(&fiber);
                ran = true;
            }
        }
        bool released = false;
        for (int first = 0; first < count; first += kWarp) {
            const int last = std::min(first + kWarp, count);
            int waiting = 0, done = 0;
            for (int t = first; t < last; ++t) {
                waiting += fibers[t].state == State::WarpBarrier;
                done += fibers[t].state == State::Done;
            }
            if (waiting > 0 && waiting + done == last - first) {
                if (done > 0 || last - first != kWarp) {
                    fail("a warp-wide intrinsic ran in a partial warp at " + where(fibers[first]));
                    return;
                }
                for (int t = first; t < last; ++t) {
                    fibers[t].state = State::Runnable;
                }
                released = true;
            }
        }
        int alive = 0, at_barrier = 0, total = 0;
        for (auto& fiber : fibers) {
            alive += fiber.state != State::Done;
            at_barrier += fiber.state == State::BlockBarrier;
        }
        if (alive > 0 && at_barrier == alive) {
            if (alive != count) {
                fail("__syncthreads after some threads of the block returned, " + where(fibers[0]));
                return;
            }
            for (auto& fiber : fibers) {
                total += fiber.barrier_value;
                fiber.state = State::Runnable;
            }
            scheduler.barrier_count = total;
            released = true;
        }
        if (alive == 0 || !scheduler.error.empty()) {
            return;
        }
        if (!ran && !released) {
            fail("deadlock: threads wait at different barriers in " + where(fibers[0]));
            return;
        }
    }
}

template <class Body>
void launch(dim3 grid, dim3 block, Body&& body) {
    scheduler.error.clear();
    const int count = static_cast<int>(block.x * block.y * block.z);
    scheduler.fibers.resize(count);
    for (int b = 0; b < 2; ++b) {
        scheduler.float_exchange[b].assign(count, 0.f);
        scheduler.int_exchange[b].assign(count, 0);
    }
    for (int t = 0; t < count; ++t) {
        Fiber& fiber = scheduler.fibers[t];
        fiber.stack.resize(kStackBytes);
        fiber.linear = t;
        fiber.thread_idx = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
    }
    scheduler.body = std::function<void()>(body);
    block_dim = block;
    grid_dim = grid;
    for (unsigned int z = 0; z < grid.z; ++z) {
        for (unsigned int y = 0; y < grid.y; ++y) {
            for (unsigned int x = 0; x < grid.x; ++x) {
                block_idx = {x, y, z};
                run_block();
                if (!scheduler.error.empty()) {
                    throw std::runtime_error(scheduler.error);
                }
            }
        }
    }
}

inline void check_full_mask(unsigned int mask) {
    if (mask != 0xffffffffu) {
        throw std::runtime_error("only full-warp masks are emulated");
    }
}

template <typename T>
T exchange(std::vector<T> (&buffers)[2], T value, int (*source)(int lane, int argument), int argument) {
    Fiber* fiber = scheduler.current;
    std::vector<T>& buffer = buffers[fiber->warp_calls++ & 1];
    buffer[fiber->linear] = value;
    yield(State::WarpBarrier);
    const int lane = fiber->linear % kWarp;
    const int from = source(lane, argument);
    return from < 0 ? value : buffer[fiber->linear - lane + from];
}

inline int down_source(int lane, int delta) { return lane + delta < kWarp ? lane + delta : -1; }
inline int xor_source(int lane, int mask) { return lane ^ mask; }

}  // namespace emu

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define threadIdx (emu::thread_idx())
#define blockIdx (emu::block_idx)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)

using std::max;
using std::min;

inline void __syncthreads() { emu::yield(emu::State::BlockBarrier); }

inline int __syncthreads_count(int predicate) {
    emu::scheduler.current->barrier_value = predicate != 0;
    emu::yield(emu::State::BlockBarrier);
    return emu::scheduler.barrier_count;
}

inline float __shfl_down_sync(unsigned int mask, float value, int delta) {
    emu::check_full_mask(mask);
    return emu::exchange(emu::scheduler.float_exchange, value, emu::down_source, delta);
}

inline int __shfl_xor_sync(unsigned int mask, int value, int lane_mask) {
    emu::check_full_mask(mask);
    return emu::exchange(emu::scheduler.int_exchange, value, emu::xor_source, lane_mask);
}

inline int __any_sync(unsigned int mask, int predicate) {
    emu::check_full_mask(mask);
    emu::Fiber* fiber = emu::scheduler.current;
    std::vector<int>& buffer = emu::scheduler.int_exchange[fiber->warp_calls++ & 1];
    buffer[fiber->linear] = predicate != 0;
    emu::yield(emu::State::WarpBarrier);
    const int first = fiber->linear - fiber->linear % emu::kWarp;
    int any = 0;
    for (int lane = 0; lane < emu::kWarp; ++lane) {
        any |= buffer[first + lane];
    }
    return any;
}

inline float atomicAdd(float* address, float value) {
    const float old = *address;
    *address = old + value;
    return old;
}

inline double atomicAdd(double* address, double value) {
    const double old = *address;
    *address = old + value;
    return old;
}

inline int atomicMax(int* address, int value) {
    const int old = *address;
    *address = std::max(old, value);
    return old;
}

inline uint32_t __float_as_uint(float value) {
    uint32_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    return bits;
}

inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }

#include "hash_grid.cuh"
#include "projection.cuh"
#include "rasterize.cuh"
#include "tiles.cuh"

using namespace avatar_cuda;

namespace {

std::string last_error;

template <class Call>
int guarded(Call&& call) {
    try {
        call();
        return 0;
    } catch (const std::exception& error) {
        last_error = error.what();
        return 1;
    }
}

unsigned int blocks_for(int64_t n) { return static_cast<unsigned int>((n + 255) / 256); }

dim3 tile_grid(int width, int height) {
    return dim3((width + kTileSize - 1) / kTileSize, (height + kTileSize - 1) / kTileSize);
}

#define EMU_FOR_EACH_FEATURE_COUNT(CASE) CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(8) CASE(16) CASE(32) CASE(64)

}  // namespace

extern "C" {

const char* emu_last_error() { return last_error.c_str(); }

int emu_project_forward(int n, const float* means, const float* quats, const float* scales, const float* viewmat,
                        const float* K, int width, int height, float near_plane, float far_plane, float eps2d,
                        float* means2d, float* conics, float* depths, int32_t* radii, float* cov2d) {
    return guarded([&] {
        emu::launch(dim3(blocks_for(n)), dim3(256), [&] {
            project_gaussians_forward_kernel(n, means, quats, scales, viewmat, K, width, height, near_plane,
                                             far_plane, eps2d, means2d, conics, depths, radii, cov2d);
        });
    });
}

int emu_project_backward(int n, const float* means, const float* quats, const float* scales, const float* viewmat,
                         const float* K, int width, int height, float eps2d, const int32_t* radii,
                         const float* v_means2d, const float* v_conics, const float* v_depths, float* v_means,
                         float* v_quats, float* v_scales, float* v_viewmat_rows) {
    return guarded([&] {
        emu::launch(dim3(blocks_for(n)), dim3(256), [&] {
            project_gaussians_backward_kernel(n, means, quats, scales, viewmat, K, width, height, eps2d, radii,
                                              v_means2d, v_conics, v_depths, v_means, v_quats, v_scales,
                                              v_viewmat_rows);
        });
    });
}

int emu_count_tiles(int n, const float* means2d, const int32_t* radii, const float* cov2d, const float* opacities,
                    int tiles_x, int tiles_y, int32_t* tiles_per_gaussian) {
    return guarded([&] {
        emu::launch(dim3(blocks_for(n)), dim3(256), [&] {
            count_tiles_kernel(n, means2d, radii, cov2d, opacities, tiles_x, tiles_y, tiles_per_gaussian);
        });
    });
}

int emu_write_tile_keys(int n, const float* means2d, const int32_t* radii, const float* cov2d,
                        const float* opacities, const float* depths, const int64_t* entries_end, int tiles_x,
                        int tiles_y, uint64_t* keys, int32_t* gaussian_ids) {
    return guarded([&] {
        emu::launch(dim3(blocks_for(n)), dim3(256), [&] {
            write_tile_keys_kernel(n, means2d, radii, cov2d, opacities, depths, entries_end, tiles_x, tiles_y,
                                   keys, gaussian_ids);
        });
    });
}

int emu_tile_offsets(int m, int num_tiles, const uint64_t* sorted_keys, int32_t* offsets) {
    return guarded([&] {
        emu::launch(dim3(blocks_for(m)), dim3(256),
                    [&] { tile_offsets_kernel(m, num_tiles, sorted_keys, offsets); });
    });
}

int emu_rasterize_forward(int num_features, int width, int height, const float* means2d, const float* conics,
                          const float* opacities, const float* features, const float* background,
                          const int32_t* tile_offsets, const int32_t* gaussian_ids, float* out_features,
                          float* out_alphas, int32_t* last_entries) {
    return guarded([&] {
        const dim3 tiles = tile_grid(width, height);
        switch (num_features) {
#define EMU_FORWARD_CASE(F)                                                                                   \
    case F:                                                                                                   \
        emu::launch(tiles, dim3(kTileSize, kTileSize), [&] {                                                  \
            rasterize_forward_kernel<F>(width, height, static_cast<int>(tiles.x), means2d, conics, opacities, \
                                        features, background, tile_offsets, gaussian_ids, out_features,       \
                                        out_alphas, last_entries);                                            \
        });                                                                                                   \
        return;
            EMU_FOR_EACH_FEATURE_COUNT(EMU_FORWARD_CASE)
#undef EMU_FORWARD_CASE
            default:
                throw std::runtime_error("no emulated kernel for " + std::to_string(num_features) + " features");
        }
    });
}

int emu_rasterize_backward(int num_features, int width, int height, const float* means2d, const float* conics,
                           const float* opacities, const float* features, const float* background,
                           const int32_t* tile_offsets, const int32_t* gaussian_ids, const float* out_alphas,
                           const int32_t* last_entries, const float* v_out_features, const float* v_out_alphas,
                           float* v_means2d, float* v_conics, float* v_opacities, float* v_features) {
    return guarded([&] {
        const dim3 tiles = tile_grid(width, height);
        switch (num_features) {
#define EMU_BACKWARD_CASE(F)                                                                                   \
    case F:                                                                                                    \
        emu::launch(tiles, dim3(kTileSize, kTileSize), [&] {                                                   \
            rasterize_backward_kernel<F>(width, height, static_cast<int>(tiles.x), means2d, conics, opacities, \
                                         features, background, tile_offsets, gaussian_ids, out_alphas,         \
                                         last_entries, v_out_features, v_out_alphas, v_means2d, v_conics,      \
                                         v_opacities, v_features);                                             \
        });                                                                                                    \
        return;
            EMU_FOR_EACH_FEATURE_COUNT(EMU_BACKWARD_CASE)
#undef EMU_BACKWARD_CASE
            default:
                throw std::runtime_error("no emulated kernel for " + std::to_string(num_features) + " features");
        }
    });
}

}  // extern "C"

namespace {

template <typename scalar_t, int F>
void hash_grid_forward_typed(int64_t n, int n_levels, const void* positions, const void* params,
                             const double* level_scales, const int64_t* level_info, int interpolation,
                             void* features) {
    emu::launch(dim3(blocks_for(n), n_levels), dim3(256), [&] {
        hash_grid_forward_kernel<scalar_t, F>(n, n_levels, static_cast<const scalar_t*>(positions),
                                              static_cast<const scalar_t*>(params), level_scales, level_info,
                                              interpolation, static_cast<scalar_t*>(features));
    });
}

template <typename scalar_t, int F>
void hash_grid_backward_typed(int64_t n, int n_levels, const void* positions, const void* params,
                              const double* level_scales, const int64_t* level_info, int interpolation,
                              const void* grad_features, void* grad_params, void* grad_positions) {
    emu::launch(dim3(blocks_for(n), n_levels), dim3(256), [&] {
        hash_grid_backward_params_kernel<scalar_t, F>(n, n_levels, static_cast<const scalar_t*>(positions),
                                                      level_scales, level_info, interpolation,
                                                      static_cast<const scalar_t*>(grad_features),
                                                      static_cast<scalar_t*>(grad_params));
    });
    emu::launch(dim3(blocks_for(n)), dim3(256), [&] {
        hash_grid_backward_positions_kernel<scalar_t, F>(
            n, n_levels, static_cast<const scalar_t*>(positions), static_cast<const scalar_t*>(params),
            level_scales, level_info, interpolation, static_cast<const scalar_t*>(grad_features),
            static_cast<scalar_t*>(grad_positions));
    });
}

}  // namespace

#define EMU_HASH_GRID_DISPATCH(FUNCTION, ...)                                                      \
    switch (features_per_level) {                                                                  \
        case 1:                                                                                    \
            double_precision ? FUNCTION<double, 1>(__VA_ARGS__) : FUNCTION<float, 1>(__VA_ARGS__); \
            return;                                                                                \
        case 2:                                                                                    \
            double_precision ? FUNCTION<double, 2>(__VA_ARGS__) : FUNCTION<float, 2>(__VA_ARGS__); \
            return;                                                                                \
        case 4:                                                                                    \
            double_precision ? FUNCTION<double, 4>(__VA_ARGS__) : FUNCTION<float, 4>(__VA_ARGS__); \
            return;                                                                                \
        case 8:                                                                                    \
            double_precision ? FUNCTION<double, 8>(__VA_ARGS__) : FUNCTION<float, 8>(__VA_ARGS__); \
            return;                                                                                \
        default:                                                                                   \
            throw std::runtime_error("unsupported features per level");                           \
    }

extern "C" {

int emu_hash_grid_forward(int double_precision, int features_per_level, int64_t n, int n_levels,
                          const void* positions, const void* params, const double* level_scales,
                          const int64_t* level_info, int interpolation, void* features) {
    return guarded([&] {
        EMU_HASH_GRID_DISPATCH(hash_grid_forward_typed, n, n_levels, positions, params, level_scales, level_info,
                               interpolation, features)
    });
}

int emu_hash_grid_backward(int double_precision, int features_per_level, int64_t n, int n_levels,
                           const void* positions, const void* params, const double* level_scales,
                           const int64_t* level_info, int interpolation, const void* grad_features,
                           void* grad_params, void* grad_positions) {
    return guarded([&] {
        EMU_HASH_GRID_DISPATCH(hash_grid_backward_typed, n, n_levels, positions, params, level_scales,
                               level_info, interpolation, grad_features, grad_params, grad_positions)
    });
}

}  // extern "C"
