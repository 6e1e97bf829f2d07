#pragma once
// Which quantized tensors the error list shows, and in what order: filtering by role and text,
// sorting by error, name or layer. Pure functions over QuantRunData, tested without widgets.
#include "quantization_data.h"

#include <QString>

#include <vector>

namespace moe::views {

enum class QuantMetric { RelError, SnrDb };
enum class QuantSort { ByError, ByName, ByLayer };
enum class RoleFilter { All, Weights, Activations, Gradients };

// HF layer index in a key ("model.layers.12.mlp.down_proj.weight@input" -> 12); -1 for tensors
// outside the layers (embedding, head).
int tensor_layer(const QString& key);
// Compact display name: "model." and ".weight" dropped, the role suffix kept short
// ("layers.12.mlp.down_proj @in", "layers.12.mlp.down_proj @grad").
QString short_tensor_name(const QString& key);
// Shorter still, for narrow lists: "L12 e3.down @in", "L1 attn.q_b @grad", "head".
QString compact_tensor_name(const QString& key);
QString role_name(QuantRole role);  // "weight", "activation", "gradient"
// Names compare like people read them: "layers.2" before "layers.10".
bool natural_less(const QString& a, const QString& b);

bool role_matches(QuantRole role, RoleFilter filter);

// Tensor indices that pass the role and text filters (text: case-insensitive substring of the
// key; several words must all match), ordered: by error worst first (largest relative error,
// or lowest SNR), by name, or by layer then name (tensors outside the layers last). Ties and
// tensors without a value at this row keep name order.
std::vector<int> order_tensors(const QuantRunData& run, const QuantRowData& row, QuantSort sort,
                               QuantMetric metric, RoleFilter filter, const QString& text);

}  // namespace moe::views
