#include "store/run_reader.h"

#include <sys/stat.h>

#include <algorithm>
#include <limits>
#include <map>

#include "store/hdf5_handles.h"
#include "store/run_schema.h"

namespace moe {

namespace {

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

std::string shape_string(const std::vector<hsize_t>& dims) {
    std::string s = "[";
    for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + "]";
}

std::string expected_shape(const RunDatasetSpec& spec) {
    std::string s = "[rows";
    for (int64_t d : spec.inner) s += ", " + std::to_string(d);
    return s + "]";
}

std::vector<hsize_t> dims_of(hid_t ds, const std::string& path, const std::string& where) {
    h5::Dataspace space = h5::make<h5::Dataspace>(H5Dget_space(ds), path, "dataspace of " + where);
    const int rank = h5::check(H5Sget_simple_extent_ndims(space.get()), path, "rank of " + where);
    std::vector<hsize_t> dims(static_cast<size_t>(rank));
    h5::check(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr), path, "shape of " + where);
    return dims;
}

h5::Attribute open_attr(hid_t loc, const std::string& name, const std::string& path, const std::string& where,
                        const std::string& expected) {
    const htri_t exists = h5::check(H5Aexists(loc, name.c_str()), path, "attribute " + name + " on " + where);
    if (exists == 0)
        throw FileError(path, "attribute " + name + " on " + where + " is missing (expected " + expected + ")");
    return h5::make<h5::Attribute>(H5Aopen(loc, name.c_str(), H5P_DEFAULT), path,
                                   "opening attribute " + name + " on " + where);
}

// Reads a string attribute (scalar or 1-D), variable- or fixed-length.
std::vector<std::string> read_strings_attr(hid_t loc, const std::string& name, const std::string& path,
                                           const std::string& where) {
    const std::string what = "attribute " + name + " on " + where;
    h5::Attribute a = open_attr(loc, name, path, where, "a string");
    h5::Datatype ftype = h5::make<h5::Datatype>(H5Aget_type(a.get()), path, what);
    if (H5Tget_class(ftype.get()) != H5T_STRING) throw FileError(path, what + ": expected a string");
    h5::Dataspace space = h5::make<h5::Dataspace>(H5Aget_space(a.get()), path, what);
    const hssize_t n = h5::check(H5Sget_simple_extent_npoints(space.get()), path, what);
    std::vector<std::string> out;
    if (n <= 0) return out;
    if (h5::check(H5Tis_variable_str(ftype.get()), path, what) > 0) {
        h5::Datatype mtype = h5::vlen_utf8_type(path);
        std::vector<char*> buf(static_cast<size_t>(n), nullptr);
        h5::check(H5Aread(a.get(), mtype.get(), buf.data()), path, "reading " + what);
        for (char* p : buf) {
            out.emplace_back(p ? p : "");
            if (p) H5free_memory(p);
        }
    } else {
        const size_t size = H5Tget_size(ftype.get());
        h5::Datatype mtype = h5::make<h5::Datatype>(H5Tcopy(H5T_C_S1), path, what);
        h5::check(H5Tset_size(mtype.get(), size), path, what);
        std::vector<char> buf(size * static_cast<size_t>(n));
        h5::check(H5Aread(a.get(), mtype.get(), buf.data()), path, "reading " + what);
        for (hssize_t i = 0; i < n; ++i) {
            std::string s(buf.data() + i * size, size);
            out.push_back(s.substr(0, s.find('\0')));
        }
    }
    return out;
}

std::string read_string_attr(hid_t loc, const std::string& name, const std::string& path, const std::string& where) {
    auto v = read_strings_attr(loc, name, path, where);
    if (v.size() != 1)
        throw FileError(path, "attribute " + name + " on " + where + ": expected one string, got " +
                                  std::to_string(v.size()));
    return v[0];
}

std::vector<int64_t> read_int64s_attr(hid_t loc, const std::string& name, const std::string& path,
                                      const std::string& where) {
    const std::string what = "attribute " + name + " on " + where;
    h5::Attribute a = open_attr(loc, name, path, where, "integers");
    h5::Datatype ftype = h5::make<h5::Datatype>(H5Aget_type(a.get()), path, what);
    if (H5Tget_class(ftype.get()) != H5T_INTEGER) throw FileError(path, what + ": expected an integer");
    h5::Dataspace space = h5::make<h5::Dataspace>(H5Aget_space(a.get()), path, what);
    const hssize_t n = h5::check(H5Sget_simple_extent_npoints(space.get()), path, what);
    std::vector<int64_t> out(static_cast<size_t>(std::max<hssize_t>(n, 0)));
    if (!out.empty()) h5::check(H5Aread(a.get(), H5T_NATIVE_INT64, out.data()), path, "reading " + what);
    return out;
}

int64_t read_int64_attr(hid_t loc, const std::string& name, const std::string& path, const std::string& where) {
    auto v = read_int64s_attr(loc, name, path, where);
    if (v.size() != 1)
        throw FileError(path, "attribute " + name + " on " + where + ": expected one integer, got " +
                                  std::to_string(v.size()));
    return v[0];
}

double read_double_attr(hid_t loc, const std::string& name, const std::string& path, const std::string& where) {
    const std::string what = "attribute " + name + " on " + where;
    h5::Attribute a = open_attr(loc, name, path, where, "a number");
    h5::Dataspace space = h5::make<h5::Dataspace>(H5Aget_space(a.get()), path, what);
    if (h5::check(H5Sget_simple_extent_npoints(space.get()), path, what) != 1)
        throw FileError(path, what + ": expected one number");
    double v = 0;
    h5::check(H5Aread(a.get(), H5T_NATIVE_DOUBLE, &v), path, "reading " + what);
    return v;
}

void require_link(hid_t f, const std::string& name, const std::string& path, const std::string& expected) {
    // H5Lexists fails (rather than answering no) when a parent group is missing, so walk down.
    std::string prefix;
    size_t pos = 1;
    while (true) {
        const size_t next = name.find('/', pos);
        prefix = name.substr(0, next);
        const htri_t e = H5Lexists(f, prefix.c_str(), H5P_DEFAULT);
        if (e < 0) h5::fail(path, "looking up " + prefix);
        if (e == 0) throw FileError(path, prefix + " is missing (expected " + expected + ")");
        if (next == std::string::npos) return;
        pos = next + 1;
    }
}

std::vector<int32_t> read_fixed_int32s(hid_t f, const std::string& name, const std::string& path) {
    require_link(f, name, path, "a 1-D int32 dataset");
    h5::Dataset d = h5::make<h5::Dataset>(H5Dopen2(f, name.c_str(), H5P_DEFAULT), path, "opening dataset " + name);
    const auto dims = dims_of(d.get(), path, name);
    if (dims.size() != 1)
        throw FileError(path, "dataset " + name + ": expected a 1-D int32 dataset, found shape " + shape_string(dims));
    std::vector<int32_t> out(dims[0]);
    if (!out.empty())
        h5::check(H5Dread(d.get(), H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()), path,
                  "reading dataset " + name);
    return out;
}

struct Column {
    RunDatasetSpec spec;
    h5::Dataset ds;
};

// Reads rows [first, first + count) of a column into out (count * row_elements values).
void read_rows(const Column& c, int64_t first, int64_t count, void* out, const std::string& path) {
    const int64_t per_row = c.spec.row_elements();
    if (count <= 0 || per_row == 0) return;
    const int rank = 1 + static_cast<int>(c.spec.inner.size());
    std::vector<hsize_t> start(rank, 0), n(rank);
    start[0] = static_cast<hsize_t>(first);
    n[0] = static_cast<hsize_t>(count);
    for (size_t i = 0; i < c.spec.inner.size(); ++i) n[i + 1] = static_cast<hsize_t>(c.spec.inner[i]);
    const std::string where = c.spec.path();
    h5::Dataspace fs = h5::make<h5::Dataspace>(H5Dget_space(c.ds.get()), path, where);
    h5::check(H5Sselect_hyperslab(fs.get(), H5S_SELECT_SET, start.data(), nullptr, n.data(), nullptr), path,
              "selecting rows of " + where);
    h5::Dataspace ms = h5::make<h5::Dataspace>(H5Screate_simple(rank, n.data(), nullptr), path, where);
    h5::check(H5Dread(c.ds.get(), native_type(c.spec.dtype), ms.get(), fs.get(), H5P_DEFAULT, out), path,
              "reading rows " + std::to_string(first) + ".." + std::to_string(first + count - 1) + " of dataset " +
                  where);
}

template <typename T>
std::vector<T> read_column(const Column& c, int64_t first, int64_t count, const std::string& path) {
    std::vector<T> out(static_cast<size_t>(std::max<int64_t>(count, 0) * c.spec.row_elements()));
    read_rows(c, first, count, out.data(), path);
    return out;
}

}  // namespace

MetricsRow MetricsColumns::row(int64_t i) const {
    const auto k = static_cast<size_t>(i);
    return MetricsRow{step[k],      tokens[k], wall_s[k],       loss[k],       mtp_loss[k], aux_loss[k],
                      lr[k],        grad_norm[k], tokens_per_s[k], loss_scale[k], skipped[k]};
}

struct RunReader::Impl {
    h5::File file;
    std::map<std::string, std::vector<Column>> groups;
    std::map<std::string, int64_t> rows;

    const Column& column(const std::string& group, const std::string& name) const {
        for (const auto& c : groups.at(group))
            if (c.spec.name == name) return c;
        throw std::logic_error("run reader: no column " + group + "/" + name);
    }

    // Complete rows of a group: the shortest of its datasets (0 for a group the file's format
    // version does not have).
    int64_t count_rows(const std::string& group, const std::string& path) const {
        const auto it = groups.find(group);
        if (it == groups.end() || it->second.empty()) return 0;
        int64_t n = std::numeric_limits<int64_t>::max();
        for (const auto& c : groups.at(group))
            n = std::min(n, static_cast<int64_t>(dims_of(c.ds.get(), path, c.spec.path())[0]));
        return n;
    }
};

RunReader::RunReader(const std::string& path) : path_(path), impl_(std::make_unique<Impl>()) {
    h5::silence_errors();
    h5::Lock lock(h5::hdf5_mutex());

    struct stat st{};
    if (::stat(path.c_str(), &st) != 0) throw FileError(path, "no such run file");
    const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
    if (is_hdf5 < 0) h5::fail(path, "cannot read the file");
    if (is_hdf5 == 0) throw FileError(path, "not an HDF5 file (no HDF5 signature); expected a MoE Workbench run file");

    // SWMR read first (a live or crashed writer); a file that was never in SWMR format (older
    // libver, written by another tool) refuses that, and opens plain read-only.
    hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, H5P_DEFAULT);
    if (f >= 0) {
        live_ = true;
    } else {
        H5Eclear2(H5E_DEFAULT);
        f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
        // Both opens fail for the same reason on a damaged file; the plain one's message is clearer.
        if (f < 0) h5::fail(path, "cannot open the run file (truncated or damaged?)");
    }
    impl_->file = h5::File(f);

    // Header: "/" attributes first, so a foreign HDF5 file is rejected before any dataset lookup.
    RunHeader& h = header_;
    if (h5::check(H5Aexists(f, "format"), path, "attribute format on /") == 0)
        throw FileError(path, "attribute format on / is missing: not a MoE Workbench run file (expected format = \"" +
                                  std::string(kRunFormat) + "\")");
    h.format = read_string_attr(f, "format", path, "/");
    if (h.format != kRunFormat)
        throw FileError(path, "attribute format on /: expected \"" + std::string(kRunFormat) + "\", got \"" +
                                  h.format + "\" (not a MoE Workbench run file)");
    h.format_version = read_int64_attr(f, "format_version", path, "/");
    if (h.format_version > kRunFormatVersion)
        throw FileError(path, "attribute format_version on /: file has version " + std::to_string(h.format_version) +
                                  ", this build reads up to " + std::to_string(kRunFormatVersion) +
                                  " (written by a newer MoE Workbench)");
    if (h.format_version < 1)
        throw FileError(path, "attribute format_version on /: expected >= 1, got " + std::to_string(h.format_version));
    h.created = read_string_attr(f, "created", path, "/");
    h.engine_version = read_string_attr(f, "engine_version", path, "/");
    h.name = read_string_attr(f, "name", path, "/");
    h.device = read_string_attr(f, "device", path, "/");
    h.project_json = read_string_attr(f, "project", path, "/");
    h.config_json = read_string_attr(f, "config", path, "/");
    h.n_experts = read_int64_attr(f, "n_experts", path, "/");
    h.top_k = read_int64_attr(f, "top_k", path, "/");
    h.label_names = read_strings_attr(f, "label_names", path, "/");

    const std::vector<std::string> row_groups = run_row_groups(h.format_version);
    for (const auto& group : row_groups) require_link(f, "/" + group, path, "a group");
    {
        h5::Group g = h5::make<h5::Group>(H5Gopen2(f, "/experts", H5P_DEFAULT), path, "opening group /experts");
        h.moe_layer_indices = read_int64s_attr(g.get(), "layer_indices", path, "/experts");
    }
    {
        h5::Group g = h5::make<h5::Group>(H5Gopen2(f, "/routing", H5P_DEFAULT), path, "opening group /routing");
        h.probe_text = read_string_attr(g.get(), "probe_text", path, "/routing");
    }
    h.probe_tokens = read_fixed_int32s(f, "/routing/probe_tokens", path);
    h.probe_labels = read_fixed_int32s(f, "/routing/probe_labels", path);
    if (h.format_version >= 2) {
        h.precision = read_string_attr(f, "precision", path, "/");
        h5::Group q = h5::make<h5::Group>(H5Gopen2(f, "/quant", H5P_DEFAULT), path, "opening group /quant");
        h.quant_tensors = read_strings_attr(q.get(), "tensors", path, "/quant");
        h.quant_roles = read_strings_attr(q.get(), "roles", path, "/quant");
        h.scale_tensors = read_strings_attr(q.get(), "scale_tensors", path, "/quant");
        h.scale_grid_rows = read_int64s_attr(q.get(), "scale_grid_rows", path, "/quant");
        h.scale_grid_cols = read_int64s_attr(q.get(), "scale_grid_cols", path, "/quant");
        if (h.quant_roles.size() != h.quant_tensors.size())
            throw FileError(path, "attribute roles on /quant: expected " + std::to_string(h.quant_tensors.size()) +
                                      " roles (one per tensor), got " + std::to_string(h.quant_roles.size()));
        if (h.scale_grid_rows.size() != h.scale_tensors.size() || h.scale_grid_cols.size() != h.scale_tensors.size())
            throw FileError(path, "attributes scale_grid_rows/scale_grid_cols on /quant: expected " +
                                      std::to_string(h.scale_tensors.size()) + " grid shapes each");
        for (size_t i = 0; i < h.scale_grid_rows.size(); ++i)
            if (h.scale_grid_rows[i] < 0 || h.scale_grid_cols[i] < 0)
                throw FileError(path, "attributes scale_grid_rows/scale_grid_cols on /quant: negative shape for " +
                                          h.scale_tensors[i]);
        h5::Group sp = h5::make<h5::Group>(H5Gopen2(f, "/sparsity", H5P_DEFAULT), path, "opening group /sparsity");
        h.ffn_layer_indices = read_int64s_attr(sp.get(), "ffn_layer_indices", path, "/sparsity");
        h.near_zero_threshold = read_double_attr(sp.get(), "near_zero_threshold", path, "/sparsity");
    }
    if (h.format_version >= 3) {
        h5::Group pg = h5::make<h5::Group>(H5Gopen2(f, "/parallel", H5P_DEFAULT), path, "opening group /parallel");
        h.world_size = read_int64_attr(pg.get(), "world_size", path, "/parallel");
        h.parallel_layout = read_string_attr(pg.get(), "layout", path, "/parallel");
        if (h.world_size < 1 || h.world_size > 1000000)
            throw FileError(path, "attribute world_size on /parallel: expected 1 to 1000000, got " +
                                      std::to_string(h.world_size));
    }

    // Row datasets: present, with the rank and inner shape the header implies.
    for (const auto& group : row_groups) {
        auto& columns = impl_->groups[group];
        for (auto& spec : run_group_datasets(group, h)) {
            const std::string where = spec.path();
            const std::string expected = std::string(run_dtype_name(spec.dtype)) + " " + expected_shape(spec);
            require_link(f, where, path, "a dataset of " + expected);
            h5::Dataset ds = h5::make<h5::Dataset>(H5Dopen2(f, where.c_str(), H5P_DEFAULT), path,
                                                   "opening dataset " + where);
            const auto dims = dims_of(ds.get(), path, where);
            bool ok = dims.size() == 1 + spec.inner.size();
            for (size_t i = 0; ok && i < spec.inner.size(); ++i) ok = dims[i + 1] == static_cast<hsize_t>(spec.inner[i]);
            if (!ok)
                throw FileError(path, "dataset " + where + ": expected " + expected + ", found shape " +
                                          shape_string(dims));
            h5::Datatype t = h5::make<h5::Datatype>(H5Dget_type(ds.get()), path, where);
            const H5T_class_t cls = H5Tget_class(t.get());
            const bool is_int =
                spec.dtype == RunDtype::I32 || spec.dtype == RunDtype::I64 || spec.dtype == RunDtype::U32;
            if (cls != (is_int ? H5T_INTEGER : H5T_FLOAT))
                throw FileError(path, "dataset " + where + ": expected " + expected + ", found a " +
                                          (cls == H5T_INTEGER ? "integer" : cls == H5T_FLOAT ? "float" : "non-numeric") +
                                          " dataset");
            columns.push_back(Column{std::move(spec), std::move(ds)});
        }
        impl_->rows[group] = impl_->count_rows(group, path);
    }
}

RunReader::~RunReader() = default;
RunReader::RunReader(RunReader&&) noexcept = default;
RunReader& RunReader::operator=(RunReader&&) noexcept = default;

bool RunReader::refresh() {
    if (!impl_) return false;
    h5::Lock lock(h5::hdf5_mutex());
    bool grew = false;
    for (const auto& group : run_row_groups(header_.format_version)) {
        if (live_)
            for (auto& c : impl_->groups[group])
                h5::check(H5Drefresh(c.ds.get()), path_, "refreshing dataset " + c.spec.path());
        const int64_t n = impl_->count_rows(group, path_);
        grew = grew || n > impl_->rows[group];
        impl_->rows[group] = n;
    }
    return grew;
}

int64_t RunReader::metrics_count() const { return impl_ ? impl_->rows.at("metrics") : 0; }
int64_t RunReader::eval_count() const { return impl_ ? impl_->rows.at("eval") : 0; }
int64_t RunReader::experts_count() const { return impl_ ? impl_->rows.at("experts") : 0; }
int64_t RunReader::routing_count() const { return impl_ ? impl_->rows.at("routing") : 0; }
int64_t RunReader::quant_count() const { return impl_ && impl_->rows.count("quant") ? impl_->rows.at("quant") : 0; }
int64_t RunReader::sparsity_count() const {
    return impl_ && impl_->rows.count("sparsity") ? impl_->rows.at("sparsity") : 0;
}

MetricsColumns RunReader::metrics_since(int64_t row) const {
    MetricsColumns m;
    m.first_row = std::max<int64_t>(row, 0);
    const int64_t n = metrics_count() - m.first_row;
    if (n <= 0) return m;
    h5::Lock lock(h5::hdf5_mutex());
    auto col = [&](const char* name) -> const Column& { return impl_->column("metrics", name); };
    m.step = read_column<int64_t>(col("step"), m.first_row, n, path_);
    m.tokens = read_column<int64_t>(col("tokens"), m.first_row, n, path_);
    m.wall_s = read_column<double>(col("wall_s"), m.first_row, n, path_);
    m.loss = read_column<double>(col("loss"), m.first_row, n, path_);
    m.mtp_loss = read_column<double>(col("mtp_loss"), m.first_row, n, path_);
    m.aux_loss = read_column<double>(col("aux_loss"), m.first_row, n, path_);
    m.lr = read_column<double>(col("lr"), m.first_row, n, path_);
    m.grad_norm = read_column<double>(col("grad_norm"), m.first_row, n, path_);
    m.tokens_per_s = read_column<double>(col("tokens_per_s"), m.first_row, n, path_);
    m.loss_scale = read_column<double>(col("loss_scale"), m.first_row, n, path_);
    m.skipped = read_column<int32_t>(col("skipped"), m.first_row, n, path_);
    return m;
}

std::vector<EvalRow> RunReader::eval() const {
    const int64_t n = eval_count(), labels = header_.n_labels();
    std::vector<EvalRow> out(static_cast<size_t>(n));
    if (n == 0) return out;
    h5::Lock lock(h5::hdf5_mutex());
    const auto step = read_column<int64_t>(impl_->column("eval", "step"), 0, n, path_);
    const auto loss = read_column<double>(impl_->column("eval", "loss"), 0, n, path_);
    const auto ll = read_column<double>(impl_->column("eval", "label_loss"), 0, n, path_);
    const auto la = read_column<double>(impl_->column("eval", "label_accuracy"), 0, n, path_);
    for (int64_t i = 0; i < n; ++i) {
        auto& r = out[static_cast<size_t>(i)];
        r.step = step[i];
        r.loss = loss[i];
        r.label_loss.assign(ll.begin() + i * labels, ll.begin() + (i + 1) * labels);
        r.label_accuracy.assign(la.begin() + i * labels, la.begin() + (i + 1) * labels);
    }
    return out;
}

namespace {

void check_index(int64_t i, int64_t count, const std::string& path, const std::string& group) {
    if (i < 0 || i >= count)
        throw FileError(path, "/" + group + ": row " + std::to_string(i) + " out of range (the file has " +
                                  std::to_string(count) + " complete rows)");
}

}  // namespace

ExpertsRow RunReader::experts(int64_t i) const {
    check_index(i, experts_count(), path_, "experts");
    ExpertsRows rows = experts_rows(i, 1);
    ExpertsRow r;
    r.step = rows.step[0];
    r.load = std::move(rows.load);
    r.bias = std::move(rows.bias);
    r.maxvio = std::move(rows.maxvio);
    return r;
}

ExpertsRows RunReader::experts_rows(int64_t first, int64_t count, bool with_load, bool with_bias) const {
    ExpertsRows r;
    if (count <= 0) return r;
    check_index(first, experts_count(), path_, "experts");
    check_index(first + count - 1, experts_count(), path_, "experts");
    h5::Lock lock(h5::hdf5_mutex());
    r.step = read_column<int64_t>(impl_->column("experts", "step"), first, count, path_);
    if (with_load) r.load = read_column<float>(impl_->column("experts", "load"), first, count, path_);
    if (with_bias) r.bias = read_column<float>(impl_->column("experts", "bias"), first, count, path_);
    r.maxvio = read_column<float>(impl_->column("experts", "maxvio"), first, count, path_);
    return r;
}

FloatMatrix RunReader::expert_load_matrix(int64_t layer) const {
    const int64_t L = header_.n_layers();
    if (layer < 0 || layer >= L)
        throw FileError(path_, "/experts/load: layer " + std::to_string(layer) + " out of range (L=" +
                                   std::to_string(L) + ")");
    FloatMatrix m;
    m.rows = experts_count();
    m.cols = header_.n_experts;
    m.values.resize(static_cast<size_t>(m.rows * m.cols));
    if (m.rows == 0) return m;
    h5::Lock lock(h5::hdf5_mutex());
    const Column& c = impl_->column("experts", "load");
    const hsize_t start[3] = {0, static_cast<hsize_t>(layer), 0};
    const hsize_t count[3] = {static_cast<hsize_t>(m.rows), 1, static_cast<hsize_t>(m.cols)};
    h5::Dataspace fs = h5::make<h5::Dataspace>(H5Dget_space(c.ds.get()), path_, "/experts/load");
    h5::check(H5Sselect_hyperslab(fs.get(), H5S_SELECT_SET, start, nullptr, count, nullptr), path_,
              "selecting layer " + std::to_string(layer) + " of /experts/load");
    h5::Dataspace ms = h5::make<h5::Dataspace>(H5Screate_simple(3, count, nullptr), path_, "/experts/load");
    h5::check(H5Dread(c.ds.get(), H5T_NATIVE_FLOAT, ms.get(), fs.get(), H5P_DEFAULT, m.values.data()), path_,
              "reading layer " + std::to_string(layer) + " of /experts/load");
    return m;
}

RoutingRow RunReader::routing(int64_t i) const {
    check_index(i, routing_count(), path_, "routing");
    h5::Lock lock(h5::hdf5_mutex());
    RoutingRow r;
    r.step = read_column<int64_t>(impl_->column("routing", "step"), i, 1, path_)[0];
    r.topk = read_column<int32_t>(impl_->column("routing", "topk"), i, 1, path_);
    r.weights = read_column<float>(impl_->column("routing", "weights"), i, 1, path_);
    r.scores = read_column<float>(impl_->column("routing", "scores"), i, 1, path_);
    return r;
}

QuantRow RunReader::quant(int64_t i) const {
    check_index(i, quant_count(), path_, "quant");
    h5::Lock lock(h5::hdf5_mutex());
    auto col = [&](const char* name) -> const Column& { return impl_->column("quant", name); };
    QuantRow r;
    r.step = read_column<int64_t>(col("step"), i, 1, path_)[0];
    r.rel_error = read_column<float>(col("rel_error"), i, 1, path_);
    r.snr_db = read_column<float>(col("snr_db"), i, 1, path_);
    r.amax = read_column<float>(col("amax"), i, 1, path_);
    r.frac_saturated = read_column<float>(col("frac_saturated"), i, 1, path_);
    r.frac_flushed = read_column<float>(col("frac_flushed"), i, 1, path_);
    r.value_hist = read_column<uint32_t>(col("value_hist"), i, 1, path_);
    r.value_zeros = read_column<uint32_t>(col("value_zeros"), i, 1, path_);
    r.error_hist = read_column<uint32_t>(col("error_hist"), i, 1, path_);
    r.scales = read_column<float>(col("scales"), i, 1, path_);
    return r;
}

QuantErrorSeries RunReader::quant_error_series(int64_t q) const {
    const int64_t Q = header_.n_quant();
    if (q < 0 || q >= Q)
        throw FileError(path_, "/quant: tensor " + std::to_string(q) + " out of range (Q=" + std::to_string(Q) + ")");
    QuantErrorSeries out;
    const int64_t n = quant_count();
    if (n == 0) return out;
    h5::Lock lock(h5::hdf5_mutex());
    out.step = read_column<int64_t>(impl_->column("quant", "step"), 0, n, path_);
    // One column of a [rows, Q] dataset.
    auto read_tensor = [&](const char* name) {
        const Column& c = impl_->column("quant", name);
        std::vector<float> v(static_cast<size_t>(n));
        const hsize_t start[2] = {0, static_cast<hsize_t>(q)};
        const hsize_t count[2] = {static_cast<hsize_t>(n), 1};
        const std::string where = c.spec.path();
        h5::Dataspace fs = h5::make<h5::Dataspace>(H5Dget_space(c.ds.get()), path_, where);
        h5::check(H5Sselect_hyperslab(fs.get(), H5S_SELECT_SET, start, nullptr, count, nullptr), path_,
                  "selecting tensor " + std::to_string(q) + " of " + where);
        h5::Dataspace ms = h5::make<h5::Dataspace>(H5Screate_simple(2, count, nullptr), path_, where);
        h5::check(H5Dread(c.ds.get(), H5T_NATIVE_FLOAT, ms.get(), fs.get(), H5P_DEFAULT, v.data()), path_,
                  "reading tensor " + std::to_string(q) + " of " + where);
        return v;
    };
    out.rel_error = read_tensor("rel_error");
    out.snr_db = read_tensor("snr_db");
    out.amax = read_tensor("amax");
    return out;
}

int64_t RunReader::parallel_count() const {
    return impl_ && impl_->rows.count("parallel") ? impl_->rows.at("parallel") : 0;
}

ParallelRows RunReader::parallel_rows() const {
    ParallelRows r;
    const int64_t n = parallel_count();
    if (n == 0) return r;
    h5::Lock lock(h5::hdf5_mutex());
    r.step = read_column<int64_t>(impl_->column("parallel", "step"), 0, n, path_);
    for (const auto& c : run_parallel_columns())
        r.columns.push_back(read_column<double>(impl_->column("parallel", c), 0, n, path_));
    return r;
}

SparsityRows RunReader::sparsity_rows() const {
    SparsityRows r;
    const int64_t n = sparsity_count();
    if (n == 0) return r;
    h5::Lock lock(h5::hdf5_mutex());
    r.step = read_column<int64_t>(impl_->column("sparsity", "step"), 0, n, path_);
    r.near_zero = read_column<float>(impl_->column("sparsity", "near_zero"), 0, n, path_);
    r.unused_experts = read_column<float>(impl_->column("sparsity", "unused_experts"), 0, n, path_);
    return r;
}

}  // namespace moe
