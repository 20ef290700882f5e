//! Free-running generation on host memory: the whole loop of [`crate::ops::generation`] on the
//! matrices' own buffers, one GEMM per layer per token and one for the readout, the streams
//! split across cores (each core runs its streams start to finish: they never wait for each
//! other), every draw by the same [`Sampling::choose`] as the generic loop.

use std::ops::Range;

use burn::backend::ndarray::NdArrayTensor;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::math::Prepared as _;
use super::{parallel, read, HostFloat, HostRead};
use crate::error::Result;
use crate::nonlinearity::Nonlinearity;
use crate::ops::{GenerationLayer, GenerationNet};
use crate::sample::{stream_rng, GenerateConfig};

/// One layer's matrices on the host, the products' right operands prepared once for every
/// token ([`HostFloat::prepare`]).
struct Layer<F: HostFloat> {
    /// The bottom layer's token table `[vocab, hidden]` (a row lookup), else `[below, hidden]`.
    input: HostRead<F>,
    /// `input` prepared for the product with the layer below (every layer but the bottom).
    dense: Option<F::Prepared>,
    bias: Option<HostRead<F>>,
    recurrent: Option<F::Prepared>,
    act: Nonlinearity,
    hidden: usize,
}

/// Every stream's tokens (see [`crate::ops::generation`]).
/// `primitive` gives a tensor's ndarray buffer.
pub(super) fn generate<F: HostFloat, B: Backend>(
    net: GenerationNet<B>,
    config: &GenerateConfig,
    primitive: impl Fn(Tensor<B, 2>) -> NdArrayTensor,
) -> Result<Vec<Vec<usize>>> {
    let host = |t: Tensor<B, 2>| read::<F, 2>(primitive(t)).0;
    let prepared = |t: Tensor<B, 2>| {
        let [k, n] = t.dims();
        F::prepare(k, n, &host(t), n, 1)
    };
    let layers: Vec<Layer<F>> = net
        .layers
        .into_iter()
        .enumerate()
        .map(
            |(
                depth,
                GenerationLayer {
                    input,
                    bias,
                    recurrent,
                    act,
                },
            )| Layer {
                hidden: input.dims()[1],
                dense: (depth > 0).then(|| prepared(input.clone())),
                input: host(input),
                bias: bias.map(host),
                recurrent: recurrent.map(prepared),
                act,
            },
        )
        .collect();
    let [top_hidden, classes] = net.v.dims();
    let v_len = top_hidden * classes;
    let (v, c) = (prepared(net.v), net.c.map(host));
    let states: Vec<HostRead<F>> = net.state.into_iter().map(host).collect();
    let streams = states[0].len() / layers[0].hidden;

    // Multiply-adds per stream per token: each layer's products (the bottom layer's input is a
    // lookup) and the readout.
    let per_token: usize = layers
        .iter()
        .enumerate()
        .map(|(k, l)| {
            let input = if k == 0 { 0 } else { l.input.len() };
            let (rows, cols) = l.recurrent.as_ref().map_or((0, 0), |w| w.dims());
            input + rows * cols
        })
        .sum::<usize>()
        + v_len;
    let parts = parallel::parts(streams, config.steps.saturating_mul(per_token));
    let run = |rows: Range<usize>| {
        let h: Vec<Vec<F>> = layers
            .iter()
            .zip(&states)
            .map(|(l, s)| s[rows.start * l.hidden..rows.end * l.hidden].to_vec())
            .collect();
        generate_rows(&layers, &v, c.as_deref(), classes, h, rows, config)
    };
    let mut tokens = Vec::with_capacity(streams);
    for part in parallel::run(parts, run) {
        tokens.extend(part?);
    }
    Ok(tokens)
}

/// The loop for streams `rows`, from their states `h` (one `[rows, hidden]` buffer per layer).
fn generate_rows<F: HostFloat>(
    layers: &[Layer<F>],
    v: &F::Prepared,
    c: Option<&[F]>,
    classes: usize,
    mut h: Vec<Vec<F>>,
    rows: Range<usize>,
    config: &GenerateConfig,
) -> Result<Vec<Vec<usize>>> {
    let count = rows.len();
    let mut rngs: Vec<_> = rows.clone().map(|s| stream_rng(config.seed, s)).collect();
    let mut tokens = vec![Vec::with_capacity(config.steps); count];
    let mut logits = vec![F::default(); count * classes];
    let mut row = vec![0f32; classes];
    let mut next: Vec<Vec<F>> = h.iter().map(|h| vec![F::default(); h.len()]).collect();
    let top = layers.len() - 1;
    for step in 0..config.steps {
        // o = c + h_top V
        fill_rows(&mut logits, c);
        let hidden = layers[top].hidden;
        F::gemm_prepared(count, &h[top], hidden, 1, v, true, &mut logits, classes);
        for (r, rng) in rngs.iter_mut().enumerate() {
            let o = &logits[r * classes..(r + 1) * classes];
            row.iter_mut()
                .zip(o)
                .for_each(|(x, &o)| *x = o.elem::<f32>());
            tokens[r].push(config.sampling.choose(&row, rng)?);
        }
        if step + 1 == config.steps {
            break;
        }
        for (k, layer) in layers.iter().enumerate() {
            let hidden = layer.hidden;
            let a = &mut next[k];
            fill_rows(a, layer.bias.as_deref());
            if k == 0 {
                // the fed-back token: row ŷ of the token table
                for (a, chosen) in a.chunks_exact_mut(hidden).zip(&tokens) {
                    let id = *chosen.last().expect("a token was just drawn");
                    let table = &layer.input[id * hidden..(id + 1) * hidden];
                    a.iter_mut().zip(table).for_each(|(a, &u)| *a = *a + u);
                }
            } else if let Some(u) = &layer.dense {
                let below = layers[k - 1].hidden;
                F::gemm_prepared(count, &h[k - 1], below, 1, u, true, a, hidden);
            }
            if let Some(w) = &layer.recurrent {
                F::gemm_prepared(count, &h[k], hidden, 1, w, true, a, hidden);
            }
            F::activate(a, layer.act);
            std::mem::swap(&mut h[k], a);
        }
    }
    Ok(tokens)
}

/// Every row of `values` set to `bias` (`[width]`), or to zero without one.
fn fill_rows<F: HostFloat>(values: &mut [F], bias: Option<&[F]>) {
    match bias {
        Some(bias) => values
            .chunks_exact_mut(bias.len())
            .for_each(|row| row.copy_from_slice(bias)),
        None => values.fill(F::default()),
    }
}
