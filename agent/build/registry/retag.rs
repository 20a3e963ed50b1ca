//! Tagging an image that is already in the registry with another tag, without pulling or pushing
//! any layer: the manifest is read by digest and put back under the new tag (same repository, so
//! every blob it names is there already). `--if-changed` uses it so that one run tag names a
//! complete image set even when most images were not rebuilt.

use super::{Manifest, RegistryClient, RegistryError};

impl RegistryClient {
    /// Put `manifest` (as read from this registry) under `repository:tag`; returns the digest the
    /// registry answers with (the same as the manifest's: the bytes are unchanged).
    pub async fn put_manifest_as(
        &self,
        repository: &str,
        tag: &str,
        manifest: &Manifest,
    ) -> Result<String, RegistryError> {
        let image = format!("{}/{repository}:{tag}", self.registry);
        let url = format!("{}/v2/{repository}/manifests/{tag}", self.base);
        let scope = format!("repository:{repository}:pull,push");
        let resp = self
            .send(&image, &scope, || {
                self.http
                    .put(&url)
                    .header(reqwest::header::CONTENT_TYPE, manifest.media_type.as_str())
                    .body(manifest.body.clone())
            })
            .await?;
        let resp = self.check(&image, resp).await?;
        let digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| manifest.digest.clone());
        if digest != manifest.digest {
            return Err(self.malformed(
                &image,
                format!(
                    "the registry stored the manifest {} as {digest}",
                    manifest.digest
                ),
            ));
        }
        Ok(digest)
    }

    /// Tag `repository@from` (a digest or a tag) as `repository:tag`; returns the digest.
    pub async fn retag(
        &self,
        repository: &str,
        from: &str,
        tag: &str,
    ) -> Result<String, RegistryError> {
        let m = self.manifest(repository, from).await?;
        self.put_manifest_as(repository, tag, &m).await
    }
}
