use std::ops::ControlFlow;
use std::time::Instant;

use b3o_models::Device;
use b3o_models::image::mnist_dataset;
use b3o_models::model::ModelSpec;
use b3o_models::train::{Optimizer, TrainConfig, evaluate, train_local};

#[test]
fn mnist_cnn_reaches_95_percent() {
    let data = mnist_dataset(
        &crate::dataset("mnist/mnist-10k-images-idx3-ubyte.gz"),
        &crate::dataset("mnist/mnist-10k-labels-idx1-ubyte.gz"),
    )
    .unwrap();
    assert_eq!(data.n_rows, 10_000);
    let (train, test) = data.split(0.2, 42);
    let spec = ModelSpec::mnist_cnn();
    let cfg = TrainConfig {
        epochs: 3,
        batch_size: 32,
        optimizer: Optimizer::Adam,
        lr: 2e-3,
        fedprox_mu: 0.0,
        seed: 1,
    };
    let start = Instant::now();
    let out = train_local(
        &spec,
        &spec.init_weights(1),
        &train,
        &cfg,
        &Device::flex(),
        &mut |_| ControlFlow::Continue(()),
    )
    .unwrap();
    let metrics = evaluate(&spec, &out.weights, &test).unwrap();
    eprintln!(
        "mnist: trained in {:?}; train {:?}; test {metrics:?}",
        start.elapsed(),
        out.metrics
    );
    assert!(metrics.accuracy.unwrap() >= 0.95, "{metrics:?}");
}
