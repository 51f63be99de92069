//! The anti-replay window (RFC 4303 §3.4.3) as RFC 6479's ring of bitmap blocks,
//! with extended sequence numbers (RFC 4303 §2.2.1, Appendix A).
//!
//! The window covers the [`REPLAY_WINDOW`] sequence numbers ending at the highest
//! one authenticated so far. Advancing the window clears whole 64-bit blocks
//! instead of shifting the bitmap, so the cost of a jump is bounded by the
//! number of blocks.

/// Packets the window covers.
pub const REPLAY_WINDOW: u64 = 1024;

const BLOCK_BITS: u64 = 64;
/// One block more than the window needs, so that advancing never clears bits
/// still inside the window (RFC 6479 §2).
const BLOCKS: usize = (REPLAY_WINDOW / BLOCK_BITS) as usize + 1;

/// Why the window rejected a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayCheck {
    /// Already received.
    Replayed,
    /// Zero, or left of the window.
    OutsideWindow,
}

/// RFC 6479 anti-replay bitmap with ESN inference.
#[derive(Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Highest sequence number accepted so far; 0 before the first packet.
    top: u64,
    bitmap: [u64; BLOCKS],
}

impl std::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("top", &self.top)
            .finish_non_exhaustive()
    }
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    /// An empty window: accepts 1, 2, ... up to [`REPLAY_WINDOW`] ahead of 0.
    pub fn new() -> Self {
        Self {
            top: 0,
            bitmap: [0; BLOCKS],
        }
    }

    /// The highest sequence number accepted so far (0 before the first).
    pub fn top(&self) -> u64 {
        self.top
    }

    /// Infers the high 32 bits of an extended sequence number from the low 32
    /// bits a packet carries, relative to the window (RFC 4303 Appendix A2.2).
    /// `None` when the number would lie before the start of the sequence space.
    pub fn infer_esn(&self, seq_low: u32) -> Option<u64> {
        const W: u32 = REPLAY_WINDOW as u32;
        let top_low = self.top as u32;
        let top_high = (self.top >> 32) as u32;
        let bottom_low = top_low.wrapping_sub(W - 1);
        let high = if top_low >= W - 1 {
            // Case A: the window lies within one 2^32 subspace.
            if seq_low >= bottom_low {
                Some(top_high)
            } else {
                top_high.checked_add(1)
            }
        } else if seq_low >= bottom_low {
            // Case B: the window spans two subspaces, and seq_low is in the lower.
            top_high.checked_sub(1)
        } else {
            Some(top_high)
        }?;
        Some((u64::from(high) << 32) | u64::from(seq_low))
    }

    fn position(seq: u64) -> (usize, u64) {
        (
            (seq / BLOCK_BITS) as usize % BLOCKS,
            1 << (seq % BLOCK_BITS),
        )
    }

    /// The check before decryption: is `seq` new and inside the window?
    pub fn check(&self, seq: u64) -> Result<(), ReplayCheck> {
        if seq == 0 {
            return Err(ReplayCheck::OutsideWindow);
        }
        if seq > self.top {
            return Ok(());
        }
        if self.top - seq >= REPLAY_WINDOW {
            return Err(ReplayCheck::OutsideWindow);
        }
        let (block, bit) = Self::position(seq);
        if self.bitmap[block] & bit != 0 {
            return Err(ReplayCheck::Replayed);
        }
        Ok(())
    }

    /// The update after the ICV verified: records `seq`, advancing the window
    /// if it is the new highest. Checks again, so a caller that interleaved two
    /// packets with the same number still accepts only one.
    pub fn update(&mut self, seq: u64) -> Result<(), ReplayCheck> {
        self.check(seq)?;
        if seq > self.top {
            let old_block = self.top / BLOCK_BITS;
            let new_block = seq / BLOCK_BITS;
            let advance = new_block - old_block;
            if advance >= BLOCKS as u64 {
                self.bitmap = [0; BLOCKS];
            } else {
                for i in 1..=advance {
                    self.bitmap[((old_block + i) % BLOCKS as u64) as usize] = 0;
                }
            }
            self.top = seq;
        }
        let (block, bit) = Self::position(seq);
        self.bitmap[block] |= bit;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_reorder_replay_and_too_old() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.check(0), Err(ReplayCheck::OutsideWindow));
        for s in 1..=5000 {
            w.update(s).unwrap();
        }
        assert_eq!(w.check(5000), Err(ReplayCheck::Replayed));
        assert_eq!(w.check(5000 - 1023), Err(ReplayCheck::Replayed));
        assert_eq!(w.check(5000 - 1024), Err(ReplayCheck::OutsideWindow));
        // Jump ahead, then fill in the gap out of order.
        w.update(7000).unwrap();
        for s in (7000 - 1023..7000).rev() {
            w.update(s).unwrap();
        }
        assert_eq!(w.check(7000 - 1024), Err(ReplayCheck::OutsideWindow));
        for s in 7000 - 1023..=7000 {
            assert_eq!(w.check(s), Err(ReplayCheck::Replayed), "{s}");
        }
        // A huge jump clears everything.
        w.update(1 << 40).unwrap();
        assert_eq!(w.check((1 << 40) - 1), Ok(()));
        assert_eq!(w.check(7000), Err(ReplayCheck::OutsideWindow));
    }

    #[test]
    fn every_block_boundary_keeps_the_full_window() {
        let mut w = ReplayWindow::new();
        for top in (1u64..3000).step_by(37) {
            w.update(top).unwrap();
            let low = top.saturating_sub(REPLAY_WINDOW - 1).max(1);
            for s in low..top {
                let seen = (s - 1) % 37 == 0;
                assert_eq!(w.check(s).is_err(), seen, "top {top} seq {s}");
            }
        }
    }

    #[test]
    fn esn_inference() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.infer_esn(1), Some(1));
        // Right after start, numbers "behind" zero are invalid.
        assert_eq!(w.infer_esn(u32::MAX), None);
        w.update(0xffff_fff0).unwrap();
        assert_eq!(w.infer_esn(0xffff_fff5), Some(0xffff_fff5));
        assert_eq!(w.infer_esn(5), Some(0x1_0000_0005));
        w.update(0x1_0000_0005).unwrap();
        // Now in case B: high low-bits belong to the previous subspace.
        assert_eq!(w.infer_esn(0xffff_fff8), Some(0xffff_fff8));
        assert_eq!(w.infer_esn(6), Some(0x1_0000_0006));
    }
}
