//! Who may do what (SPEC 5.2): one table of roles × actions, and which roles an image's
//! visibility lets apply. Management-plane checks use sessions, the data plane uses leases;
//! both ask this table.

use crate::visibility::Visibility;

/// A caller's relation to an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The image's owner.
    Owner,
    /// A user of the image's ACL with read access.
    SharedRead,
    /// A user of the image's ACL with read and write access.
    SharedWrite,
    /// The holder of a live share link.
    LinkHolder,
    /// Anyone.
    Public,
}

/// What a caller wants to do, each with its lease scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read the bytes (`disk:read`).
    Read,
    /// Write (a delta) (`disk:write`).
    Write,
    /// Delete the image (`disk:delete`).
    Delete,
    /// Change visibility, the ACL and share links (`disk:share`).
    Share,
    /// Upload content (`disk:upload`).
    Upload,
}

impl Action {
    /// Every action, in the table's column order.
    pub const ALL: [Action; 5] = [
        Action::Read,
        Action::Write,
        Action::Delete,
        Action::Share,
        Action::Upload,
    ];

    /// The lease scope of the action.
    pub fn scope(self) -> &'static str {
        match self {
            Action::Read => "disk:read",
            Action::Write => "disk:write",
            Action::Delete => "disk:delete",
            Action::Share => "disk:share",
            Action::Upload => "disk:upload",
        }
    }
}

/// The permission matrix: rows are roles, columns [`Action::ALL`]
/// (read, write, delete, share, upload).
const MATRIX: [(Role, [bool; 5]); 5] = [
    (Role::Owner, [true, true, true, true, true]),
    (Role::SharedRead, [true, false, false, false, false]),
    (Role::SharedWrite, [true, true, false, false, false]),
    (Role::LinkHolder, [true, false, false, false, false]),
    (Role::Public, [true, false, false, false, false]),
];

/// Whether `role` may do `action`.
pub fn allows(role: Role, action: Action) -> bool {
    let column = Action::ALL
        .iter()
        .position(|a| *a == action)
        .expect("every action has a column");
    MATRIX
        .iter()
        .find(|(r, _)| *r == role)
        .is_some_and(|(_, row)| row[column])
}

/// Whether `role` applies to an image of `visibility`: the owner always; ACL users and link
/// holders unless the image is private (making an image private suspends all its sharing at
/// once); anyone only when it is public.
pub fn applies(role: Role, visibility: Visibility) -> bool {
    match role {
        Role::Owner => true,
        Role::SharedRead | Role::SharedWrite | Role::LinkHolder => {
            visibility != Visibility::Private
        }
        Role::Public => visibility == Visibility::Public,
    }
}

/// Whether a caller holding `roles` may do `action` on an image of `visibility`.
pub fn permitted(visibility: Visibility, roles: &[Role], action: Action) -> bool {
    roles
        .iter()
        .any(|&r| applies(r, visibility) && allows(r, action))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;
    use Role::*;

    /// SPEC 5.2, cell by cell: owner = read/write/delete/share/upload; shared-read = read;
    /// shared-write = read+write; link holder = read; public = read.
    #[test]
    fn the_matrix_is_spec_5_2() {
        let expected: [(Role, &[Action]); 5] = [
            (Owner, &[Read, Write, Delete, Share, Upload]),
            (SharedRead, &[Read]),
            (SharedWrite, &[Read, Write]),
            (LinkHolder, &[Read]),
            (Public, &[Read]),
        ];
        for (role, granted) in expected {
            for action in Action::ALL {
                assert_eq!(
                    allows(role, action),
                    granted.contains(&action),
                    "{role:?} × {action:?}"
                );
            }
        }
    }

    #[test]
    fn visibility_decides_which_roles_apply() {
        use Visibility::*;
        let rows: [(Visibility, Role, bool); 15] = [
            (Private, Owner, true),
            (Private, SharedRead, false),
            (Private, SharedWrite, false),
            (Private, LinkHolder, false),
            (Private, Role::Public, false),
            (Shared, Owner, true),
            (Shared, SharedRead, true),
            (Shared, SharedWrite, true),
            (Shared, LinkHolder, true),
            (Shared, Role::Public, false),
            (Visibility::Public, Owner, true),
            (Visibility::Public, SharedRead, true),
            (Visibility::Public, SharedWrite, true),
            (Visibility::Public, LinkHolder, true),
            (Visibility::Public, Role::Public, true),
        ];
        for (v, role, want) in rows {
            assert_eq!(applies(role, v), want, "{v:?} {role:?}");
        }
        assert!(permitted(Shared, &[Role::Public, SharedWrite], Write));
        assert!(!permitted(Visibility::Public, &[Role::Public], Write));
        assert!(!permitted(Private, &[LinkHolder], Read));
        assert_eq!(Read.scope(), "disk:read");
    }
}
