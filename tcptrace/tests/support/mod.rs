pub mod frames;
pub mod netns;
pub mod proc;
