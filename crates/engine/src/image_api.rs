//! The engine's image calls that need to know the containers: what is in use.

use std::collections::HashSet;

use crate::engine::Engine;
use crate::error::Result;
use crate::image::Removal;

impl Engine {
    /// Ids of the images some container (in any state) was made from.
    fn images_in_use(&self) -> Result<HashSet<String>> {
        Ok(self
            .registry
            .list()?
            .iter()
            .filter_map(|r| {
                r.config
                    .get("image")
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            })
            .collect())
    }

    /// Removes an image reference (or the image, by id); refused while a container
    /// uses it.
    pub fn remove_image(&self, reference: &str) -> Result<Removal> {
        let used = self.images_in_use()?;
        self.images()?.remove(reference, |id| used.contains(id))
    }

    /// Removes dangling images no container uses (`all`: every image no container
    /// uses, references and all), then the layers and blobs nothing needs.
    pub fn prune_images(&self, all: bool) -> Result<Removal> {
        let used = self.images_in_use()?;
        let store = self.images()?;
        if all {
            store.prune_unused(|id| used.contains(id))
        } else {
            store.prune(|id| used.contains(id))
        }
    }
}
