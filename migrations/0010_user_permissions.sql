-- 0010: permissions granted to a user beyond those of their roles (e.g. `nodes:code`), set by admins
-- through PUT/DELETE /api/v1/users/{id}/permissions/{permission}; read with the user on every request.
ALTER TABLE users ADD COLUMN IF NOT EXISTS granted_permissions text[] NOT NULL DEFAULT '{}';
