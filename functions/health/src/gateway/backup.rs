//! Image backups of healthy gateways: one `CreateImage` per RPO interval under a
//! deterministic name, and pruning beyond the retention count
//! ([`plan_images`] decides).

use super::model::{Instance, Lifecycle};
use super::plan::plan_images;
use super::report::{Action, RunError};
use super::run::Gateways;
use time::OffsetDateTime;

impl Gateways {
    /// This interval's backup image of a healthy running gateway, and pruning.
    pub(super) async fn back_up(
        &self,
        gw: &str,
        current: &Instance,
        now: OffsetDateTime,
        actions: &mut Vec<Action>,
    ) -> Result<(), RunError> {
        let images = self.ec2.gateway_images(gw).await?;
        let can_create = current.lifecycle == Lifecycle::Running;
        let plan = plan_images(gw, &images, now, &self.config.images, can_create);
        let mut created = true;
        if let Some(name) = plan.create {
            let image_id = if self.dry() {
                None
            } else {
                self.ec2.create_image(&current.id, &name, gw).await?
            };
            created = self.dry() || image_id.is_some();
            actions.push(Action::CreateImage { name, image_id });
        }
        if !created {
            // The name exists already (a listing that lagged): prune on the next run.
            return Ok(());
        }
        for id in plan.prune {
            if !self.dry() {
                if let Some(image) = images.iter().find(|i| i.id == id) {
                    self.ec2.delete_image(image).await?;
                }
            }
            actions.push(Action::DeleteImage { image_id: id });
        }
        Ok(())
    }
}
