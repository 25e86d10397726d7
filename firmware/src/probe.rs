//! Runtime hooks: drive the step pin and time every step and every op with
//! the board clock, summed per op class (opcode).

use crate::board::Clock;
use embedded_hal::digital::OutputPin;

/// Opcodes are small (FORMAT.md: 1..=11); anything larger lands in the last slot.
pub const CLASSES: usize = 16;
/// Ops timed one by one (a model with more ops times the rest per class only).
pub const MAX_OPS: usize = 256;

/// Timing state shared with the sampler through [`ddpm_runtime::Hooks`].
pub struct Probe<'a, P: OutputPin> {
    pin: &'a mut P,
    clock: Clock,
    step_t0: u64,
    op_t0: u64,
    /// Clock units of the last finished step.
    pub last_step: u64,
    /// Clock units summed over all steps.
    pub steps_total: u64,
    /// Clock units spent inside ops, per opcode.
    pub class_units: [u64; CLASSES],
    /// Op invocations, per opcode.
    pub class_calls: [u32; CLASSES],
    /// Clock units summed over all steps, per op index (the first [`MAX_OPS`];
    /// static storage, off the stack).
    pub op_units: &'a mut [u64; MAX_OPS],
}

impl<'a, P: OutputPin> Probe<'a, P> {
    /// A probe toggling `pin`, reading `clock` and summing per-op time into
    /// `op_units`.
    pub fn new(pin: &'a mut P, clock: Clock, op_units: &'a mut [u64; MAX_OPS]) -> Self {
        Self {
            pin,
            clock,
            step_t0: 0,
            op_t0: 0,
            last_step: 0,
            steps_total: 0,
            class_units: [0; CLASSES],
            class_calls: [0; CLASSES],
            op_units,
        }
    }

    /// Clock units spent in all ops.
    pub fn ops_total(&self) -> u64 {
        self.class_units.iter().sum()
    }
}

/// Slot of an opcode in the per-class arrays.
pub fn class(opcode: u16) -> usize {
    (opcode as usize).min(CLASSES - 1)
}

impl<P: OutputPin> ddpm_runtime::Hooks for Probe<'_, P> {
    fn step_start(&mut self, _step: u32, _t: u32) {
        // A GPIO write cannot fail on these boards; a failing pin must not stop sampling.
        let _ = self.pin.set_high();
        self.step_t0 = self.clock.now();
    }

    fn step_end(&mut self, _step: u32, _t: u32) {
        let dt = self.clock.now() - self.step_t0;
        let _ = self.pin.set_low();
        self.last_step = dt;
        self.steps_total += dt;
    }

    fn op_start(&mut self, _index: u16, _opcode: u16) {
        self.op_t0 = self.clock.now();
    }

    fn op_end(&mut self, index: u16, opcode: u16) {
        let dt = self.clock.now() - self.op_t0;
        let c = class(opcode);
        self.class_units[c] += dt;
        self.class_calls[c] += 1;
        if let Some(u) = self.op_units.get_mut(usize::from(index)) {
            *u += dt;
        }
    }
}
