#include "store/run_writer.h"

#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <ctime>
#include <map>

#include <spdlog/spdlog.h>

#include "store/hdf5_handles.h"
#include "store/run_schema.h"

namespace moe {

namespace {

hid_t file_type(RunDtype t) {
    switch (t) {
        case RunDtype::I32: return H5T_STD_I32LE;
        case RunDtype::I64: return H5T_STD_I64LE;
        case RunDtype::F32: return H5T_IEEE_F32LE;
        case RunDtype::F64: return H5T_IEEE_F64LE;
        case RunDtype::U32: return H5T_STD_U32LE;
    }
    return H5T_IEEE_F64LE;
}

hid_t native_type(RunDtype t) {
    switch (t) {
        case RunDtype::I32: return H5T_NATIVE_INT32;
        case RunDtype::I64: return H5T_NATIVE_INT64;
        case RunDtype::F32: return H5T_NATIVE_FLOAT;
        case RunDtype::F64: return H5T_NATIVE_DOUBLE;
        case RunDtype::U32: return H5T_NATIVE_UINT32;
    }
    return H5T_NATIVE_DOUBLE;
}

void write_string_attr(hid_t loc, const std::string& name, const std::string& value,
                       const std::string& path, const std::string& where) {
    const std::string what = "attribute " + name + " on " + where;
    h5::Datatype t = h5::vlen_utf8_type(path);
    h5::Dataspace s = h5::make<h5::Dataspace>(H5Screate(H5S_SCALAR), path, what);
    h5::Attribute a = h5::make<h5::Attribute>(
        H5Acreate2(loc, name.c_str(), t.get(), s.get(), H5P_DEFAULT, H5P_DEFAULT), path, what);
    const char* p = value.c_str();
    h5::check(H5Awrite(a.get(), t.get(), &p), path, "writing " + what);
}

void write_strings_attr(hid_t loc, const std::string& name, const std::vector<std::string>& values,
                        const std::string& path, const std::string& where) {
    const std::string what = "attribute " + name + " on " + where;
    h5::Datatype t = h5::vlen_utf8_type(path);
    const hsize_t n = values.size();
    h5::Dataspace s = h5::make<h5::Dataspace>(H5Screate_simple(1, &n, nullptr), path, what);
    h5::Attribute a = h5::make<h5::Attribute>(
        H5Acreate2(loc, name.c_str(), t.get(), s.get(), H5P_DEFAULT, H5P_DEFAULT), path, what);
    std::vector<const char*> ptrs;
    for (const auto& v : values) ptrs.push_back(v.c_str());
    const char* none = nullptr;
    h5::check(H5Awrite(a.get(), t.get(), ptrs.empty() ? &none : ptrs.data()), path, "writing " + what);
}

void write_int64s_attr(hid_t loc, const std::string& name, const std::vector<int64_t>& values,
                       bool scalar, const std::string& path, const std::string& where) {
    const std::string what = "attribute " + name + " on " + where;
    const hsize_t n = values.size();
    h5::Dataspace s = h5::make<h5::Dataspace>(
        scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, nullptr), path, what);
    h5::Attribute a = h5::make<h5::Attribute>(
        H5Acreate2(loc, name.c_str(), H5T_STD_I64LE, s.get(), H5P_DEFAULT, H5P_DEFAULT), path, what);
    const int64_t zero = 0;
    h5::check(H5Awrite(a.get(), H5T_NATIVE_INT64, values.empty() ? &zero : values.data()), path,
              "writing " + what);
}

void write_double_attr(hid_t loc, const std::string& name, double value, const std::string& path,
                       const std::string& where) {
    const std::string what = "attribute " + name + " on " + where;
    h5::Dataspace s = h5::make<h5::Dataspace>(H5Screate(H5S_SCALAR), path, what);
    h5::Attribute a = h5::make<h5::Attribute>(
        H5Acreate2(loc, name.c_str(), H5T_IEEE_F64LE, s.get(), H5P_DEFAULT, H5P_DEFAULT), path, what);
    h5::check(H5Awrite(a.get(), H5T_NATIVE_DOUBLE, &value), path, "writing " + what);
}

// A small fixed-size 1-D int32 dataset (the probe), written once before SWMR starts.
void write_fixed_int32s(hid_t group, const std::string& name, const std::vector<int32_t>& values,
                        const std::string& path, const std::string& where) {
    const std::string what = "dataset " + where;
    const hsize_t n = values.size();
    h5::Dataspace s = h5::make<h5::Dataspace>(H5Screate_simple(1, &n, nullptr), path, what);
    h5::Dataset d = h5::make<h5::Dataset>(
        H5Dcreate2(group, name.c_str(), H5T_STD_I32LE, s.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
        path, "creating " + what);
    if (n > 0)
        h5::check(H5Dwrite(d.get(), H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()),
                  path, "writing " + what);
}

std::string size_mismatch(const std::string& dataset, int64_t expected, int64_t actual,
                          const std::string& shape) {
    return dataset + ": expected " + std::to_string(expected) + " values (" + shape + "), got " +
           std::to_string(actual);
}

}  // namespace

std::string iso8601_utc_now() {
    const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

// One row dataset, open for the writer's lifetime.
struct Column {
    RunDatasetSpec spec;
    h5::Dataset ds;
};

struct RunWriter::Impl {
    h5::File file;
    std::map<std::string, std::vector<Column>> groups;  // group -> columns in schema order
    std::map<std::string, int64_t> rows;                // group -> complete rows written
    std::string failed;                                 // first append/flush error, if any

    // Writes one row into every column of `group` through write(row). Refuses after an earlier
    // failure (columns may then be uneven); counts the row only when every column was written.
    template <typename Write>
    void append_row(const std::string& path, const std::string& group, Write&& write) {
        if (!file.valid()) throw FileError(path, "append to a closed run file");
        if (!failed.empty()) throw FileError(path, "append refused after an earlier write error: " + failed);
        h5::Lock lock(h5::hdf5_mutex());
        try {
            write(rows[group]);
        } catch (const FileError& e) {
            failed = e.what();
            throw;
        }
        ++rows[group];
    }

    Column& column(const std::string& group, const std::string& name) {
        for (auto& c : groups.at(group))
            if (c.spec.name == name) return c;
        throw std::logic_error("run writer: no column " + group + "/" + name);
    }
};

RunWriter::RunWriter(const std::string& path, const RunHeader& header, bool overwrite)
    : path_(path), header_(header), impl_(std::make_unique<Impl>()) {
    h5::silence_errors();
    h5::Lock lock(h5::hdf5_mutex());

    // Validate the header first: the shapes of every dataset follow from it.
    header_.format = kRunFormat;
    header_.format_version = kRunFormatVersion;
    if (header_.created.empty()) header_.created = iso8601_utc_now();
    if (header_.engine_version.empty()) header_.engine_version = MOE_VERSION;
    if (header_.n_layers() < 1)
        throw FileError(path, "header moe_layer_indices: expected at least one MoE layer, got 0");
    if (header_.n_experts < 1)
        throw FileError(path, "header n_experts: expected >= 1, got " + std::to_string(header_.n_experts));
    if (header_.top_k < 1 || header_.top_k > header_.n_experts)
        throw FileError(path, "header top_k: expected 1.." + std::to_string(header_.n_experts) + ", got " +
                                  std::to_string(header_.top_k));
    if (header_.probe_labels.size() != header_.probe_tokens.size())
        throw FileError(path, "header probe_labels: expected " + std::to_string(header_.probe_tokens.size()) +
                                  " labels (one per probe token), got " +
                                  std::to_string(header_.probe_labels.size()));

    if (header_.quant_roles.size() != header_.quant_tensors.size())
        throw FileError(path, "header quant_roles: expected " + std::to_string(header_.quant_tensors.size()) +
                                  " roles (one per quantized tensor), got " +
                                  std::to_string(header_.quant_roles.size()));
    if (header_.scale_grid_rows.size() != header_.scale_tensors.size() ||
        header_.scale_grid_cols.size() != header_.scale_tensors.size())
        throw FileError(path, "header scale_grid_rows/scale_grid_cols: expected " +
                                  std::to_string(header_.scale_tensors.size()) + " grid shapes, got " +
                                  std::to_string(header_.scale_grid_rows.size()) + "/" +
                                  std::to_string(header_.scale_grid_cols.size()));

    struct stat st{};
    if (!overwrite && ::stat(path.c_str(), &st) == 0)
        throw FileError(path, "a file already exists there; refusing to overwrite a run file "
                              "(choose another name for the new run; the existing file is left as it is)");

    // SWMR needs the latest file format (superblock v3, version-2 B-trees / extensible arrays).
    h5::PropList fapl = h5::make<h5::PropList>(H5Pcreate(H5P_FILE_ACCESS), path, "file access list");
    h5::check(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_LATEST, H5F_LIBVER_LATEST), path,
              "requesting the latest file format");
    // EXCL as well as the stat above: two writers racing for one name must not both win.
    impl_->file = h5::make<h5::File>(
        H5Fcreate(path.c_str(), overwrite ? H5F_ACC_TRUNC : H5F_ACC_EXCL, H5P_DEFAULT, fapl.get()), path,
        "cannot create the run file");
    const hid_t f = impl_->file.get();
    // A file that failed half-way through its layout is removed, so a retry is not refused as
    // "already exists".
    try {
        write_string_attr(f, "format", header_.format, path, "/");
        write_int64s_attr(f, "format_version", {header_.format_version}, true, path, "/");
        write_string_attr(f, "created", header_.created, path, "/");
        write_string_attr(f, "engine_version", header_.engine_version, path, "/");
        write_string_attr(f, "name", header_.name, path, "/");
        write_string_attr(f, "device", header_.device, path, "/");
        write_string_attr(f, "project", header_.project_json, path, "/");
        write_string_attr(f, "config", header_.config_json, path, "/");
        write_int64s_attr(f, "n_experts", {header_.n_experts}, true, path, "/");
        write_int64s_attr(f, "top_k", {header_.top_k}, true, path, "/");
        write_strings_attr(f, "label_names", header_.label_names, path, "/");
        write_string_attr(f, "precision", header_.precision, path, "/");

        // Raw-data chunk cache off: each H5Dwrite goes straight to the file, so row data reaches
        // the OS before the metadata (extent, chunk index) that points at it, which is only written
        // at flush. A killed writer then never leaves a visible row whose data was still cached.
        h5::PropList dapl = h5::make<h5::PropList>(H5Pcreate(H5P_DATASET_ACCESS), path, "dataset access list");
        h5::check(H5Pset_chunk_cache(dapl.get(), H5D_CHUNK_CACHE_NSLOTS_DEFAULT, 0, H5D_CHUNK_CACHE_W0_DEFAULT),
                  path, "disabling the chunk cache");

        for (const auto& group : run_row_groups()) {
            h5::Group g = h5::make<h5::Group>(
                H5Gcreate2(f, group.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), path, "creating group /" + group);
            if (group == "experts")
                write_int64s_attr(g.get(), "layer_indices", header_.moe_layer_indices, false, path, "/experts");
            if (group == "routing") {
                write_int64s_attr(g.get(), "layer_indices", header_.moe_layer_indices, false, path, "/routing");
                write_string_attr(g.get(), "probe_text", header_.probe_text, path, "/routing");
                write_fixed_int32s(g.get(), "probe_tokens", header_.probe_tokens, path, "/routing/probe_tokens");
                write_fixed_int32s(g.get(), "probe_labels", header_.probe_labels, path, "/routing/probe_labels");
            }
            if (group == "quant") {
                write_strings_attr(g.get(), "tensors", header_.quant_tensors, path, "/quant");
                write_strings_attr(g.get(), "roles", header_.quant_roles, path, "/quant");
                write_strings_attr(g.get(), "scale_tensors", header_.scale_tensors, path, "/quant");
                write_int64s_attr(g.get(), "scale_grid_rows", header_.scale_grid_rows, false, path, "/quant");
                write_int64s_attr(g.get(), "scale_grid_cols", header_.scale_grid_cols, false, path, "/quant");
            }
            if (group == "parallel") {
                write_int64s_attr(g.get(), "world_size", {header_.world_size}, true, path, "/parallel");
                write_string_attr(g.get(), "layout", header_.parallel_layout, path, "/parallel");
            }
            if (group == "sparsity") {
                write_int64s_attr(g.get(), "ffn_layer_indices", header_.ffn_layer_indices, false, path, "/sparsity");
                write_int64s_attr(g.get(), "moe_layer_indices", header_.moe_layer_indices, false, path, "/sparsity");
                write_double_attr(g.get(), "near_zero_threshold", header_.near_zero_threshold, path, "/sparsity");
            }
            auto& columns = impl_->groups[group];
            impl_->rows[group] = 0;
            for (auto& spec : run_group_datasets(group, header_)) {
                const std::string what = "creating dataset " + spec.path();
                const int rank = 1 + static_cast<int>(spec.inner.size());
                std::vector<hsize_t> dims(rank, 0), maxdims(rank), chunk(rank);
                maxdims[0] = H5S_UNLIMITED;
                chunk[0] = static_cast<hsize_t>(spec.chunk_rows);
                for (size_t i = 0; i < spec.inner.size(); ++i) {
                    const auto d = static_cast<hsize_t>(spec.inner[i]);
                    dims[i + 1] = d;
                    // A zero inner dimension (no labels, empty probe) cannot be chunked as fixed;
                    // make it extendible so the dataset still exists with the documented rank.
                    maxdims[i + 1] = d == 0 ? H5S_UNLIMITED : d;
                    chunk[i + 1] = d == 0 ? 1 : d;
                }
                h5::Dataspace space = h5::make<h5::Dataspace>(
                    H5Screate_simple(rank, dims.data(), maxdims.data()), path, what);
                h5::PropList dcpl = h5::make<h5::PropList>(H5Pcreate(H5P_DATASET_CREATE), path, what);
                h5::check(H5Pset_chunk(dcpl.get(), rank, chunk.data()), path, what + " (chunk layout)");
                // No compression filter: with SWMR in HDF5 1.10 a filtered chunk changes size on every
                // rewrite, so it moves in the file and readers can catch a stale chunk address;
                // unfiltered chunks are rewritten in place. Run files are small anyway (float32 rows).
                h5::Dataset ds = h5::make<h5::Dataset>(
                    H5Dcreate2(g.get(), spec.name.c_str(), file_type(spec.dtype), space.get(), H5P_DEFAULT,
                               dcpl.get(), dapl.get()),
                    path, what);
                columns.push_back(Column{std::move(spec), std::move(ds)});
            }
        }

        // From here on, only dataset extents and row data change.
        h5::check(H5Fstart_swmr_write(f), path, "starting SWMR writing");
    } catch (...) {
        impl_->groups.clear();
        impl_->file.reset();
        ::unlink(path.c_str());
        throw;
    }
}

RunWriter::~RunWriter() {
    if (!impl_) return;
    try {
        close();
    } catch (const std::exception& e) {
        spdlog::error("run file not closed cleanly: {}", e.what());
    }
}

RunWriter::RunWriter(RunWriter&&) noexcept = default;
RunWriter& RunWriter::operator=(RunWriter&&) noexcept = default;

bool RunWriter::is_open() const { return impl_ && impl_->file.valid(); }

int64_t RunWriter::metrics_rows() const { return impl_ ? impl_->rows.at("metrics") : 0; }
int64_t RunWriter::eval_rows() const { return impl_ ? impl_->rows.at("eval") : 0; }
int64_t RunWriter::experts_rows() const { return impl_ ? impl_->rows.at("experts") : 0; }
int64_t RunWriter::routing_rows() const { return impl_ ? impl_->rows.at("routing") : 0; }
int64_t RunWriter::quant_rows() const { return impl_ ? impl_->rows.at("quant") : 0; }
int64_t RunWriter::sparsity_rows() const { return impl_ ? impl_->rows.at("sparsity") : 0; }
int64_t RunWriter::parallel_rows() const { return impl_ ? impl_->rows.at("parallel") : 0; }

namespace {

// Grows `c` to row+1 rows and writes row `row` from `data` (row_elements values of the
// column's dtype in native layout).
void write_row(Column& c, int64_t row, const void* data, const std::string& path) {
    const std::string where = c.spec.path();
    const int rank = 1 + static_cast<int>(c.spec.inner.size());
    std::vector<hsize_t> dims(rank), start(rank, 0), count(rank);
    dims[0] = static_cast<hsize_t>(row + 1);
    start[0] = static_cast<hsize_t>(row);
    count[0] = 1;
    for (size_t i = 0; i < c.spec.inner.size(); ++i) dims[i + 1] = count[i + 1] = c.spec.inner[i];
    h5::check(H5Dset_extent(c.ds.get(), dims.data()), path, "extending dataset " + where + " to " +
                                                                std::to_string(row + 1) + " rows");
    if (c.spec.row_elements() == 0) return;
    h5::Dataspace file_space = h5::make<h5::Dataspace>(H5Dget_space(c.ds.get()), path, where);
    h5::check(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr),
              path, "selecting row " + std::to_string(row) + " of " + where);
    h5::Dataspace mem_space = h5::make<h5::Dataspace>(H5Screate_simple(rank, count.data(), nullptr), path, where);
    h5::check(H5Dwrite(c.ds.get(), native_type(c.spec.dtype), mem_space.get(), file_space.get(), H5P_DEFAULT, data),
              path, "writing row " + std::to_string(row) + " of dataset " + where);
}

}  // namespace

void RunWriter::append(const MetricsRow& r) {
    if (!impl_) throw FileError(path_, "append to a moved-from run writer");
    impl_->append_row(path_, "metrics", [&](int64_t row) {
        const std::array<const void*, 11> values{&r.step,     &r.tokens,    &r.wall_s,       &r.loss,
                                                 &r.mtp_loss, &r.aux_loss,  &r.lr,           &r.grad_norm,
                                                 &r.tokens_per_s, &r.loss_scale, &r.skipped};
        auto& cols = impl_->groups["metrics"];
        for (size_t i = 0; i < cols.size(); ++i) write_row(cols[i], row, values[i], path_);
    });
}

void RunWriter::append(const EvalRow& r) {
    const int64_t n = header_.n_labels();
    if (static_cast<int64_t>(r.label_loss.size()) != n)
        throw FileError(path_, size_mismatch("/eval/label_loss", n, static_cast<int64_t>(r.label_loss.size()),
                                             "n_labels=" + std::to_string(n)));
    if (static_cast<int64_t>(r.label_accuracy.size()) != n)
        throw FileError(path_, size_mismatch("/eval/label_accuracy", n,
                                             static_cast<int64_t>(r.label_accuracy.size()),
                                             "n_labels=" + std::to_string(n)));
    if (!impl_) throw FileError(path_, "append to a moved-from run writer");
    impl_->append_row(path_, "eval", [&](int64_t row) {
        write_row(impl_->column("eval", "step"), row, &r.step, path_);
        write_row(impl_->column("eval", "loss"), row, &r.loss, path_);
        write_row(impl_->column("eval", "label_loss"), row, r.label_loss.data(), path_);
        write_row(impl_->column("eval", "label_accuracy"), row, r.label_accuracy.data(), path_);
    });
}

void RunWriter::append(const ExpertsRow& r) {
    const int64_t L = header_.n_layers(), E = header_.n_experts;
    const std::string le = "L=" + std::to_string(L) + " x E=" + std::to_string(E);
    if (static_cast<int64_t>(r.load.size()) != L * E)
        throw FileError(path_, size_mismatch("/experts/load", L * E, static_cast<int64_t>(r.load.size()), le));
    if (static_cast<int64_t>(r.bias.size()) != L * E)
        throw FileError(path_, size_mismatch("/experts/bias", L * E, static_cast<int64_t>(r.bias.size()), le));
    if (static_cast<int64_t>(r.maxvio.size()) != L)
        throw FileError(path_, size_mismatch("/experts/maxvio", L, static_cast<int64_t>(r.maxvio.size()),
                                             "L=" + std::to_string(L)));
    if (!impl_) throw FileError(path_, "append to a moved-from run writer");
    impl_->append_row(path_, "experts", [&](int64_t row) {
        write_row(impl_->column("experts", "step"), row, &r.step, path_);
        write_row(impl_->column("experts", "load"), row, r.load.data(), path_);
        write_row(impl_->column("experts", "bias"), row, r.bias.data(), path_);
        write_row(impl_->column("experts", "maxvio"), row, r.maxvio.data(), path_);
    });
}

void RunWriter::append(const RoutingRow& r) {
    const int64_t L = header_.n_layers(), E = header_.n_experts, K = header_.top_k, T = header_.n_probe();
    const std::string ltk = "L=" + std::to_string(L) + " x T_p=" + std::to_string(T) + " x K=" + std::to_string(K);
    const std::string lte = "L=" + std::to_string(L) + " x T_p=" + std::to_string(T) + " x E=" + std::to_string(E);
    if (static_cast<int64_t>(r.topk.size()) != L * T * K)
        throw FileError(path_, size_mismatch("/routing/topk", L * T * K, static_cast<int64_t>(r.topk.size()), ltk));
    if (static_cast<int64_t>(r.weights.size()) != L * T * K)
        throw FileError(path_,
                        size_mismatch("/routing/weights", L * T * K, static_cast<int64_t>(r.weights.size()), ltk));
    if (static_cast<int64_t>(r.scores.size()) != L * T * E)
        throw FileError(path_,
                        size_mismatch("/routing/scores", L * T * E, static_cast<int64_t>(r.scores.size()), lte));
    if (!impl_) throw FileError(path_, "append to a moved-from run writer");
    impl_->append_row(path_, "routing", [&](int64_t row) {
        write_row(impl_->column("routing", "step"), row, &r.step, path_);
        write_row(impl_->column("routing", "topk"), row, r.topk.data(), path_);
        write_row(impl_->column("routing", "weights"), row, r.weights.data(), path_);
        write_row(impl_->column("routing", "scores"), row, r.scores.data(), path_);
    });
}

void RunWriter::append(const QuantRow& r) {
    const int64_t Q = header_.n_quant(), B = kQuantHistogramBins, S = header_.n_scale_values();
    const std::string q = "Q=" + std::to_string(Q);
    auto check = [&](const char* name, size_t got, int64_t expected, const std::string& shape) {
        if (static_cast<int64_t>(got) != expected)
            throw FileError(path_, size_mismatch(std::string("/quant/") + name, expected, static_cast<int64_t>(got), shape));
    };
    check("rel_error", r.rel_error.size(), Q, q);
    check("snr_db", r.snr_db.size(), Q, q);
    check("amax", r.amax.size(), Q, q);
    check("frac_saturated", r.frac_saturated.size(), Q, q);
    check("frac_flushed", r.frac_flushed.size(), Q, q);
    check("value_hist", r.value_hist.size(), Q * B, q + " x bins=" + std::to_string(B));
    check("value_zeros", r.value_zeros.size(), Q, q);
    check("error_hist", r.error_hist.size(), Q * B, q + " x bins=" + std::to_string(B));
    check("scales", r.scales.size(), S, "the scale grids of " + std::to_string(header_.scale_tensors.size()) + " tensors");
    if (!impl_) throw FileError(path_, "append to a moved-from run writer");
    impl_->append_row(path_, "quant", [&](int64_t row) {
        write_row(impl_->column("quant", "step"), row, &r.step, path_);
        write_row(impl_->column("quant", "rel_error"), row, r.rel_error.data(), path_);
        write_row(impl_->column("quant", "snr_db"), row, r.snr_db.data(), path_);
        write_row(impl_->column("quant", "amax"), row, r.amax.data(), path_);
        write_row(impl_->column("quant", "frac_saturated"), row, r.frac_saturated.data(), path_);
        write_row(impl_->column("quant", "frac_flushed"), row, r.frac_flushed.data(), path_);
        write_row(impl_->column("quant", "value_hist"), row, r.value_hist.data(), path_);
        write_row(impl_->column("quant", "value_zeros"), row, r.value_zeros.data(), path_);
        write_row(impl_->column("quant", "error_hist"), row, r.error_hist.data(), path_);
        write_row(impl_->column("quant", "scales"), row, r.scales.data(), path_);
    });
}

void RunWriter::append(const SparsityRow& r) {
    const int64_t F = header_.n_ffn_layers(), L = header_.n_layers();
    if (static_cast<int64_t>(r.near_zero.size()) != F)
        throw FileError(path_, size_mismatch("/sparsity/near_zero", F, static_cast<int64_t>(r.near_zero.size()),
                                             "FFN layers=" + std::to_string(F)));
    if (static_cast<int64_t>(r.unused_experts.size()) != L)
        throw FileError(path_, size_mismatch("/sparsity/unused_experts", L,
                                             static_cast<int64_t>(r.unused_experts.size()), "L=" + std::to_string(L)));
    if (!impl_) throw FileError(path_, "append to a moved-from run writer");
    impl_->append_row(path_, "sparsity", [&](int64_t row) {
        write_row(impl_->column("sparsity", "step"), row, &r.step, path_);
        write_row(impl_->column("sparsity", "near_zero"), row, r.near_zero.data(), path_);
        write_row(impl_->column("sparsity", "unused_experts"), row, r.unused_experts.data(), path_);
    });
}

void RunWriter::append(const ParallelRow& r) {
    const int64_t n = header_.world_size * kParallelColumns;
    if (static_cast<int64_t>(r.values.size()) != n)
        throw FileError(path_, size_mismatch("/parallel", n, static_cast<int64_t>(r.values.size()),
                                             "world_size=" + std::to_string(header_.world_size) + " x " +
                                                 std::to_string(kParallelColumns) + " columns"));
    if (!impl_) throw FileError(path_, "append to a moved-from run writer");
    const auto& cols = run_parallel_columns();
    std::vector<double> column(static_cast<size_t>(header_.world_size));
    impl_->append_row(path_, "parallel", [&](int64_t row) {
        write_row(impl_->column("parallel", "step"), row, &r.step, path_);
        for (size_t c = 0; c < cols.size(); ++c) {
            for (int64_t k = 0; k < header_.world_size; ++k)
                column[size_t(k)] = r.values[size_t(k) * kParallelColumns + c];
            write_row(impl_->column("parallel", cols[c]), row, column.data(), path_);
        }
    });
}

void RunWriter::flush() {
    if (!is_open()) throw FileError(path_, "flush of a closed run file");
    h5::Lock lock(h5::hdf5_mutex());
    try {
        h5::check(H5Fflush(impl_->file.get(), H5F_SCOPE_GLOBAL), path_, "flushing the run file");
    } catch (const FileError& e) {
        if (impl_->failed.empty()) impl_->failed = e.what();
        throw;
    }
}

void RunWriter::close() {
    if (!is_open()) return;
    h5::Lock lock(h5::hdf5_mutex());
    // Datasets first: the file closes for real only when its last object does.
    for (auto& [group, cols] : impl_->groups)
        for (auto& c : cols) c.ds.reset();
    impl_->groups.clear();
    const herr_t status = impl_->file.reset();
    if (status < 0) h5::fail(path_, "closing the run file (data after the last flush may be lost)");
}

}  // namespace moe
