//! The burn devices training runs on, chosen in one place: `flex` (the CPU backend, everywhere)
//! or `wgpu` (WebGPU in a browser, Vulkan/Metal natively; the `wgpu` feature).
//!
//! In a browser the wgpu runtime must be set up asynchronously before any tensor exists
//! ([`webgpu`]), and every tensor read must be asynchronous (`into_data_async().await`): the
//! `*_async` functions of [`crate::train`] and [`crate::model`] only read that way.

use burn::prelude::Device;

/// Why the wgpu device is unavailable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    #[error("this build has no WebGPU support (the `wgpu` feature is off)")]
    Unsupported,
    #[error("no usable WebGPU adapter: {0}")]
    Wgpu(String),
}

/// The CPU device.
pub fn flex() -> Device {
    Device::flex()
}

/// Whether this build can train on wgpu at all.
pub const WGPU_BUILT: bool = cfg!(feature = "wgpu");

#[cfg(feature = "wgpu")]
static WGPU: std::sync::OnceLock<Device> = std::sync::OnceLock::new();

/// The default wgpu device, initialised once with burn's asynchronous setup (the only one that
/// works in a browser) and shared afterwards.
pub async fn webgpu() -> Result<Device, DeviceError> {
    #[cfg(feature = "wgpu")]
    {
        if let Some(device) = WGPU.get() {
            return Ok(device.clone());
        }
        match Device::wgpu_options().init_async().await {
            Ok(device) => Ok(WGPU.get_or_init(|| device).clone()),
            // Initialised meanwhile by another caller: burn refuses a second setup.
            Err(e) => WGPU
                .get()
                .cloned()
                .ok_or_else(|| DeviceError::Wgpu(e.to_string())),
        }
    }
    #[cfg(not(feature = "wgpu"))]
    {
        Err(DeviceError::Unsupported)
    }
}
