pub use unfold_data as data;
pub use unfold_nn as nn;
