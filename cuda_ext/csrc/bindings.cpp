// The PyTorch bindings of the kernels: tensors in and out, device/dtype/shape/contiguity checks, outputs and
// scratch allocated through torch (its caching allocator, its current stream). Only this file includes torch;
// it reaches the CUDA stream through c10's device-generic interface, so it compiles without CUDA headers.
#include <torch/extension.h>

#include <c10/core/DeviceGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <vector>

#include "launchers.h"

namespace {

using torch::Tensor;

void* current_stream(const torch::Device& device) {
    const c10::impl::VirtualGuardImpl cuda(c10::DeviceType::CUDA);
    return cuda.getStream(device).native_handle();
}

void check_tensor(const Tensor& tensor, const char* name, torch::ScalarType dtype, const torch::Device& device,
                  std::initializer_list<int64_t> shape) {
    TORCH_CHECK(tensor.device() == device, name, " must be on ", device, ", got ", tensor.device());
    TORCH_CHECK(tensor.scalar_type() == dtype, name, " must be ", dtype, ", got ", tensor.scalar_type());
    TORCH_CHECK(tensor.is_contiguous(), name, " must be contiguous");
    const std::vector<int64_t> expected(shape);
    TORCH_CHECK(tensor.dim() == static_cast<int64_t>(expected.size()), name, " must have ", expected.size(),
                " dimensions, got shape ", tensor.sizes());
    for (size_t d = 0; d < expected.size(); ++d) {
        TORCH_CHECK(expected[d] < 0 || tensor.size(d) == expected[d], name, " has shape ", tensor.sizes(),
                    ", expected size ", expected[d], " in dimension ", d);
    }
}

torch::Device cuda_device_of(const Tensor& tensor, const char* name) {
    TORCH_CHECK(tensor.is_cuda(), name, " must be a CUDA tensor, got one on ", tensor.device());
    return tensor.device();
}

int checked_int(int64_t value, const char* what) {
    TORCH_CHECK(value >= 0 && value < INT_MAX, what, " (", value, ") does not fit the kernels' int32 indices");
    return static_cast<int>(value);
}

// Per-Gaussian arrays are indexed as int32 multiples of the Gaussian index (up to 12 * i in the backward pass).
int checked_gaussian_count(int64_t n) {
    TORCH_CHECK(n >= 0 && n <= INT_MAX / 16, "number of Gaussians (", n, ") exceeds the kernels' limit of ",
                INT_MAX / 16);
    return static_cast<int>(n);
}

int tiles_along(int64_t pixels) { return static_cast<int>((pixels + 15) / 16); }

std::vector<Tensor> project_forward(const Tensor& means, const Tensor& quats, const Tensor& scales,
                                    const Tensor& viewmat, const Tensor& K, int64_t width, int64_t height,
                                    double near_plane, double far_plane, double eps2d) {
    const auto device = cuda_device_of(means, "means");
    const int64_t n = means.size(0);
    check_tensor(means, "means", torch::kFloat32, device, {n, 3});
    check_tensor(quats, "quats", torch::kFloat32, device, {n, 4});
    check_tensor(scales, "scales", torch::kFloat32, device, {n, 3});
    check_tensor(viewmat, "viewmat", torch::kFloat32, device, {4, 4});
    check_tensor(K, "K", torch::kFloat32, device, {3, 3});
    const c10::DeviceGuard guard(device);
    const auto options = means.options();
    Tensor means2d = torch::empty({n, 2}, options);
    Tensor conics = torch::empty({n, 3}, options);
    Tensor depths = torch::empty({n}, options);
    Tensor radii = torch::empty({n}, options.dtype(torch::kInt32));
    Tensor cov2d = torch::empty({n, 3}, options);
    avatar_cuda::project_gaussians_forward(
        checked_gaussian_count(n), means.data_ptr<float>(), quats.data_ptr<float>(),
        scales.data_ptr<float>(), viewmat.data_ptr<float>(), K.data_ptr<float>(), checked_int(width, "width"),
        checked_int(height, "height"), static_cast<float>(near_plane), static_cast<float>(far_plane),
        static_cast<float>(eps2d), means2d.data_ptr<float>(), conics.data_ptr<float>(), depths.data_ptr<float>(),
        radii.data_ptr<int32_t>(), cov2d.data_ptr<float>(), current_stream(device));
    return {means2d, conics, depths, radii, cov2d};
}

std::vector<Tensor> project_backward(const Tensor& means, const Tensor& quats, const Tensor& scales,
                                     const Tensor& viewmat, const Tensor& K, int64_t width, int64_t height,
                                     double eps2d, const Tensor& radii, const Tensor& v_means2d,
                                     const Tensor& v_conics, const Tensor& v_depths, bool need_viewmat_grad) {
    const auto device = cuda_device_of(means, "means");
    const int64_t n = means.size(0);
    check_tensor(means, "means", torch::kFloat32, device, {n, 3});
    check_tensor(quats, "quats", torch::kFloat32, device, {n, 4});
    check_tensor(scales, "scales", torch::kFloat32, device, {n, 3});
    check_tensor(viewmat, "viewmat", torch::kFloat32, device, {4, 4});
    check_tensor(K, "K", torch::kFloat32, device, {3, 3});
    check_tensor(radii, "radii", torch::kInt32, device, {n});
    check_tensor(v_means2d, "v_means2d", torch::kFloat32, device, {n, 2});
    check_tensor(v_conics, "v_conics", torch::kFloat32, device, {n, 3});
    check_tensor(v_depths, "v_depths", torch::kFloat32, device, {n});
    const c10::DeviceGuard guard(device);
    const auto options = means.options();
    Tensor v_means = torch::empty({n, 3}, options);
    Tensor v_quats = torch::empty({n, 4}, options);
    Tensor v_scales = torch::empty({n, 3}, options);
    Tensor v_viewmat_rows = torch::empty({need_viewmat_grad ? n : 0, 12}, options);
    avatar_cuda::project_gaussians_backward(
        checked_gaussian_count(n), means.data_ptr<float>(), quats.data_ptr<float>(),
        scales.data_ptr<float>(), viewmat.data_ptr<float>(), K.data_ptr<float>(), checked_int(width, "width"),
        checked_int(height, "height"), static_cast<float>(eps2d), radii.data_ptr<int32_t>(),
        v_means2d.data_ptr<float>(), v_conics.data_ptr<float>(), v_depths.data_ptr<float>(),
        v_means.data_ptr<float>(), v_quats.data_ptr<float>(), v_scales.data_ptr<float>(),
        need_viewmat_grad ? v_viewmat_rows.data_ptr<float>() : nullptr, current_stream(device));
    return {v_means, v_quats, v_scales, v_viewmat_rows};
}

std::vector<Tensor> intersect_tiles(const Tensor& means2d, const Tensor& radii, const Tensor& depths,
                                    const Tensor& cov2d, const Tensor& opacities, int64_t width, int64_t height) {
    const auto device = cuda_device_of(means2d, "means2d");
    const int64_t n = means2d.size(0);
    check_tensor(means2d, "means2d", torch::kFloat32, device, {n, 2});
    check_tensor(radii, "radii", torch::kInt32, device, {n});
    check_tensor(depths, "depths", torch::kFloat32, device, {n});
    check_tensor(cov2d, "cov2d", torch::kFloat32, device, {n, 3});
    check_tensor(opacities, "opacities", torch::kFloat32, device, {n});
    const c10::DeviceGuard guard(device);
    void* stream = current_stream(device);
    const int count = checked_gaussian_count(n);
    const int tiles_x = tiles_along(checked_int(width, "width"));
    const int tiles_y = tiles_along(checked_int(height, "height"));
    const int num_tiles = checked_int(static_cast<int64_t>(tiles_x) * tiles_y, "number of tiles");
    const auto options = means2d.options();

    Tensor tiles_per_gaussian = torch::empty({n}, options.dtype(torch::kInt32));
    avatar_cuda::count_tiles(count, means2d.data_ptr<float>(), radii.data_ptr<int32_t>(), cov2d.data_ptr<float>(),
                             opacities.data_ptr<float>(), tiles_x, tiles_y, tiles_per_gaussian.data_ptr<int32_t>(),
                             stream);
    Tensor entries_end = tiles_per_gaussian.cumsum(0, torch::kInt64);
    const int64_t total = n == 0 ? 0 : entries_end[n - 1].item<int64_t>();
    const int m = checked_int(total, "number of (tile, Gaussian) overlaps");

    Tensor offsets = torch::zeros({num_tiles + 1}, options.dtype(torch::kInt32));
    Tensor sorted_keys = torch::empty({m}, options.dtype(torch::kInt64));
    Tensor sorted_ids = torch::empty({m}, options.dtype(torch::kInt32));
    if (m > 0) {
        Tensor keys = torch::empty({m}, options.dtype(torch::kInt64));
        Tensor ids = torch::empty({m}, options.dtype(torch::kInt32));
        auto* keys_ptr = reinterpret_cast<uint64_t*>(keys.data_ptr<int64_t>());
        auto* sorted_keys_ptr = reinterpret_cast<uint64_t*>(sorted_keys.data_ptr<int64_t>());
        avatar_cuda::write_tile_keys(count, means2d.data_ptr<float>(), radii.data_ptr<int32_t>(),
                                     cov2d.data_ptr<float>(), opacities.data_ptr<float>(), depths.data_ptr<float>(),
                                     entries_end.data_ptr<int64_t>(), tiles_x, tiles_y, keys_ptr,
                                     ids.data_ptr<int32_t>(), stream);
        int tile_bits = 0;
        while ((int64_t{1} << tile_bits) <= num_tiles) {
            ++tile_bits;
        }
        const int end_bit = 32 + tile_bits;
        const std::size_t temp_bytes = avatar_cuda::sort_tile_keys_temp_bytes(m, end_bit);
        Tensor temp = torch::empty({static_cast<int64_t>(std::max<std::size_t>(temp_bytes, 1))},
                                   options.dtype(torch::kUInt8));
        avatar_cuda::sort_tile_keys(temp.data_ptr(), temp_bytes, keys_ptr, sorted_keys_ptr, ids.data_ptr<int32_t>(),
                                    sorted_ids.data_ptr<int32_t>(), m, end_bit, stream);
        avatar_cuda::tile_offsets(m, num_tiles, sorted_keys_ptr, offsets.data_ptr<int32_t>(), stream);
    }
    return {sorted_keys, sorted_ids, offsets, tiles_per_gaussian};
}

void check_raster_inputs(const torch::Device& device, int64_t n, int64_t num_features, const Tensor& means2d,
                         const Tensor& conics, const Tensor& opacities, const Tensor& features,
                         const std::optional<Tensor>& background, const Tensor& tile_offsets,
                         const Tensor& gaussian_ids, int64_t width, int64_t height) {
    check_tensor(means2d, "means2d", torch::kFloat32, device, {n, 2});
    check_tensor(conics, "conics", torch::kFloat32, device, {n, 3});
    check_tensor(opacities, "opacities", torch::kFloat32, device, {n});
    check_tensor(features, "features", torch::kFloat32, device, {n, num_features});
    if (background.has_value()) {
        check_tensor(*background, "background", torch::kFloat32, device, {num_features});
    }
    const int64_t num_tiles = static_cast<int64_t>(tiles_along(width)) * tiles_along(height);
    check_tensor(tile_offsets, "tile_offsets", torch::kInt32, device, {num_tiles + 1});
    check_tensor(gaussian_ids, "gaussian_ids", torch::kInt32, device, {-1});
    const auto counts = avatar_cuda::rasterize_feature_counts();
    TORCH_CHECK(std::find(counts.begin(), counts.end(), num_features) != counts.end(), "no kernel for ",
                num_features, " features: pad them to one of ", c10::ArrayRef<int>(counts));
    checked_gaussian_count(n);
    checked_int(width * height, "number of pixels");
}

std::vector<Tensor> rasterize_forward(const Tensor& means2d, const Tensor& conics, const Tensor& opacities,
                                      const Tensor& features, const std::optional<Tensor>& background,
                                      const Tensor& tile_offsets, const Tensor& gaussian_ids, int64_t width,
                                      int64_t height) {
    const auto device = cuda_device_of(means2d, "means2d");
    const int64_t n = means2d.size(0);
    const int64_t num_features = features.dim() == 2 ? features.size(1) : -1;
    check_raster_inputs(device, n, num_features, means2d, conics, opacities, features, background, tile_offsets,
                        gaussian_ids, width, height);
    const c10::DeviceGuard guard(device);
    const auto options = means2d.options();
    Tensor out_features = torch::empty({height, width, num_features}, options);
    Tensor out_alphas = torch::empty({height, width}, options);
    Tensor last_entries = torch::empty({height, width}, options.dtype(torch::kInt32));
    avatar_cuda::rasterize_forward(
        static_cast<int>(num_features), static_cast<int>(width), static_cast<int>(height), means2d.data_ptr<float>(),
        conics.data_ptr<float>(), opacities.data_ptr<float>(), features.data_ptr<float>(),
        background.has_value() ? background->data_ptr<float>() : nullptr, tile_offsets.data_ptr<int32_t>(),
        gaussian_ids.data_ptr<int32_t>(), out_features.data_ptr<float>(), out_alphas.data_ptr<float>(),
        last_entries.data_ptr<int32_t>(), current_stream(device));
    return {out_features, out_alphas, last_entries};
}

std::vector<Tensor> rasterize_backward(const Tensor& means2d, const Tensor& conics, const Tensor& opacities,
                                       const Tensor& features, const std::optional<Tensor>& background,
                                       const Tensor& tile_offsets, const Tensor& gaussian_ids,
                                       const Tensor& out_alphas, const Tensor& last_entries,
                                       const Tensor& v_out_features, const std::optional<Tensor>& v_out_alphas,
                                       int64_t width, int64_t height) {
    const auto device = cuda_device_of(means2d, "means2d");
    const int64_t n = means2d.size(0);
    const int64_t num_features = features.dim() == 2 ? features.size(1) : -1;
    check_raster_inputs(device, n, num_features, means2d, conics, opacities, features, background, tile_offsets,
                        gaussian_ids, width, height);
    check_tensor(out_alphas, "out_alphas", torch::kFloat32, device, {height, width});
    check_tensor(last_entries, "last_entries", torch::kInt32, device, {height, width});
    check_tensor(v_out_features, "v_out_features", torch::kFloat32, device, {height, width, num_features});
    if (v_out_alphas.has_value()) {
        check_tensor(*v_out_alphas, "v_out_alphas", torch::kFloat32, device, {height, width});
    }
    const c10::DeviceGuard guard(device);
    const auto options = means2d.options();
    Tensor v_means2d = torch::zeros({n, 2}, options);
    Tensor v_conics = torch::zeros({n, 3}, options);
    Tensor v_opacities = torch::zeros({n}, options);
    Tensor v_features = torch::zeros({n, num_features}, options);
    avatar_cuda::rasterize_backward(
        static_cast<int>(num_features), static_cast<int>(width), static_cast<int>(height), means2d.data_ptr<float>(),
        conics.data_ptr<float>(), opacities.data_ptr<float>(), features.data_ptr<float>(),
        background.has_value() ? background->data_ptr<float>() : nullptr, tile_offsets.data_ptr<int32_t>(),
        gaussian_ids.data_ptr<int32_t>(), out_alphas.data_ptr<float>(), last_entries.data_ptr<int32_t>(),
        v_out_features.data_ptr<float>(), v_out_alphas.has_value() ? v_out_alphas->data_ptr<float>() : nullptr,
        v_means2d.data_ptr<float>(), v_conics.data_ptr<float>(), v_opacities.data_ptr<float>(),
        v_features.data_ptr<float>(), current_stream(device));
    return {v_means2d, v_conics, v_opacities, v_features};
}

void check_hash_grid_inputs(const torch::Device& device, const Tensor& positions, const Tensor& params,
                            const Tensor& level_scales, const Tensor& level_info, int64_t features_per_level,
                            int64_t interpolation) {
    const auto dtype = params.scalar_type();
    TORCH_CHECK(dtype == torch::kFloat32 || dtype == torch::kFloat64, "params must be float32 or float64, got ",
                dtype);
    check_tensor(params, "params", dtype, device, {-1});
    check_tensor(positions, "positions", dtype, device, {-1, 3});
    const int64_t n_levels = level_scales.numel();
    check_tensor(level_scales, "level_scales", torch::kFloat64, device, {n_levels});
    check_tensor(level_info, "level_info", torch::kInt64, device, {n_levels, 4});
    TORCH_CHECK(n_levels >= 1 && n_levels <= 65535, "the number of levels must be in [1, 65535], got ", n_levels);
    TORCH_CHECK(features_per_level == 1 || features_per_level == 2 || features_per_level == 4 ||
                    features_per_level == 8,
                "features_per_level must be 1, 2, 4 or 8, got ", features_per_level);
    TORCH_CHECK(interpolation >= 0 && interpolation <= 2, "interpolation must be 0 (Nearest), 1 (Linear) or ",
                "2 (Smoothstep), got ", interpolation);
}

Tensor hash_grid_forward(const Tensor& positions, const Tensor& params, const Tensor& level_scales,
                         const Tensor& level_info, int64_t features_per_level, int64_t interpolation) {
    const auto device = cuda_device_of(params, "params");
    check_hash_grid_inputs(device, positions, params, level_scales, level_info, features_per_level, interpolation);
    const c10::DeviceGuard guard(device);
    const int64_t n = positions.size(0);
    const int n_levels = static_cast<int>(level_scales.numel());
    Tensor features = torch::empty({n, n_levels * features_per_level}, params.options());
    avatar_cuda::hash_grid_forward(params.scalar_type() == torch::kFloat64, static_cast<int>(features_per_level), n,
                                   n_levels, positions.data_ptr(), params.data_ptr(),
                                   level_scales.data_ptr<double>(), level_info.data_ptr<int64_t>(),
                                   static_cast<int>(interpolation), features.data_ptr(), current_stream(device));
    return features;
}

std::vector<Tensor> hash_grid_backward(const Tensor& positions, const Tensor& params, const Tensor& level_scales,
                                       const Tensor& level_info, int64_t features_per_level, int64_t interpolation,
                                       const Tensor& grad_features, bool need_params, bool need_positions) {
    const auto device = cuda_device_of(params, "params");
    check_hash_grid_inputs(device, positions, params, level_scales, level_info, features_per_level, interpolation);
    const int64_t n = positions.size(0);
    const int n_levels = static_cast<int>(level_scales.numel());
    check_tensor(grad_features, "grad_features", params.scalar_type(), device, {n, n_levels * features_per_level});
    const c10::DeviceGuard guard(device);
    void* stream = current_stream(device);
    const bool double_precision = params.scalar_type() == torch::kFloat64;
    Tensor grad_params = need_params ? torch::zeros_like(params) : torch::empty({0}, params.options());
    Tensor grad_positions = need_positions ? torch::empty_like(positions) : torch::empty({0, 3}, params.options());
    if (need_params) {
        avatar_cuda::hash_grid_backward_params(double_precision, static_cast<int>(features_per_level), n, n_levels,
                                               positions.data_ptr(), level_scales.data_ptr<double>(),
                                               level_info.data_ptr<int64_t>(), static_cast<int>(interpolation),
                                               grad_features.data_ptr(), grad_params.data_ptr(), stream);
    }
    if (need_positions) {
        avatar_cuda::hash_grid_backward_positions(
            double_precision, static_cast<int>(features_per_level), n, n_levels, positions.data_ptr(),
            params.data_ptr(), level_scales.data_ptr<double>(), level_info.data_ptr<int64_t>(),
            static_cast<int>(interpolation), grad_features.data_ptr(), grad_positions.data_ptr(), stream);
    }
    return {grad_params, grad_positions};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "splat-avatar CUDA kernels: Gaussian projection, tile intersection, rasterization, hash grid";
    m.def("project_forward", &project_forward,
          "(means, quats, scales, viewmat, K, width, height, near_plane, far_plane, eps2d) -> "
          "(means2d, conics, depths, radii, cov2d)");
    m.def("project_backward", &project_backward,
          "(means, quats, scales, viewmat, K, width, height, eps2d, radii, v_means2d, v_conics, v_depths, "
          "need_viewmat_grad) -> (v_means, v_quats, v_scales, v_viewmat_rows [N, 12] or [0, 12])");
    m.def("intersect_tiles", &intersect_tiles,
          "(means2d, radii, depths, cov2d, opacities, width, height) -> "
          "(sorted_keys int64, gaussian_ids int32, tile_offsets int32, tiles_per_gaussian int32)");
    m.def("rasterize_feature_counts", &avatar_cuda::rasterize_feature_counts,
          "feature counts with a compiled rasterization kernel, ascending");
    m.def("rasterize_forward", &rasterize_forward,
          "(means2d, conics, opacities, features, background, tile_offsets, gaussian_ids, width, height) -> "
          "(out_features [H, W, F], out_alphas [H, W], last_entries [H, W])");
    m.def("rasterize_backward", &rasterize_backward,
          "(means2d, conics, opacities, features, background, tile_offsets, gaussian_ids, out_alphas, "
          "last_entries, v_out_features, v_out_alphas, width, height) -> "
          "(v_means2d, v_conics, v_opacities, v_features)");
    m.def("hash_grid_forward", &hash_grid_forward,
          "(positions, params, level_scales, level_info, features_per_level, interpolation) -> features");
    m.def("hash_grid_backward", &hash_grid_backward,
          "(positions, params, level_scales, level_info, features_per_level, interpolation, grad_features, "
          "need_params, need_positions) -> (grad_params or [0], grad_positions or [0, 3])");
}
