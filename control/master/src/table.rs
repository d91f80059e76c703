//! The inode table: inodes in one dense slab, found by id through a small
//! index.
//!
//! Why not `HashMap<u64, Inode>`: a hash table keeps 1/8 to 1/2 of its slots
//! empty, and with ~130-byte values every empty slot costs as much as an
//! inode. Here the empty slots are 12-byte index entries, and the slab grows
//! one inode at a time (untouched capacity is not resident). Freed slab slots
//! are reused before the slab grows. Ids themselves are never reused.

use std::collections::HashMap;
use std::ops::Index;

use crate::inode::Inode;

#[derive(Default)]
pub struct InodeTable {
    slots: Vec<Option<Inode>>,
    free: Vec<u32>,
    index: HashMap<u64, u32>,
}

impl InodeTable {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            slots: Vec::with_capacity(n),
            free: Vec::new(),
            index: HashMap::with_capacity(n),
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn contains_key(&self, id: &u64) -> bool {
        self.index.contains_key(id)
    }

    pub fn get(&self, id: &u64) -> Option<&Inode> {
        let slot = *self.index.get(id)?;
        self.slots[slot as usize].as_ref()
    }

    pub fn get_mut(&mut self, id: &u64) -> Option<&mut Inode> {
        let slot = *self.index.get(id)?;
        self.slots[slot as usize].as_mut()
    }

    /// Inserts or replaces the inode with `id`.
    pub fn insert(&mut self, id: u64, ino: Inode) {
        if let Some(&slot) = self.index.get(&id) {
            self.slots[slot as usize] = Some(ino);
            return;
        }
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(ino);
                s
            }
            None => {
                let s = u32::try_from(self.slots.len())
                    .expect("fewer than 2^32 inodes live in one master");
                self.slots.push(Some(ino));
                s
            }
        };
        self.index.insert(id, slot);
    }

    pub fn remove(&mut self, id: &u64) -> Option<Inode> {
        let slot = self.index.remove(id)?;
        self.free.push(slot);
        self.slots[slot as usize].take()
    }

    pub fn values(&self) -> impl Iterator<Item = &Inode> {
        self.slots.iter().flatten()
    }
}

impl Index<&u64> for InodeTable {
    type Output = Inode;
    fn index(&self, id: &u64) -> &Inode {
        self.get(id).expect("inode ids held by the tree exist")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inode::tests::sample;

    #[test]
    fn slots_are_reused_and_ids_map_to_their_inodes() {
        let mut t = InodeTable::default();
        for id in 1..=5 {
            t.insert(id, sample(id));
        }
        assert_eq!(t.remove(&2).unwrap().id, 2);
        assert!(t.remove(&2).is_none());
        assert!(t.get(&2).is_none());
        t.insert(9, sample(9));
        assert_eq!(t.slots.len(), 5, "the freed slot was reused");
        t.insert(9, sample(9));
        assert_eq!(t.len(), 5);
        for id in [1, 3, 4, 5, 9] {
            assert_eq!(t[&id].id, id);
        }
        t.get_mut(&4).unwrap().length = 77;
        assert_eq!(t[&4].length, 77);
        let mut ids: Vec<u64> = t.values().map(|i| i.id).collect();
        ids.sort();
        assert_eq!(ids, [1, 3, 4, 5, 9]);
    }
}
