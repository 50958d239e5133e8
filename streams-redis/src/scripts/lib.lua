-- Helpers shared by the scripts; prepended to each script that uses them.

-- The server's clock in milliseconds. Scripts may read TIME because Redis 7
-- replicates their effects, not the scripts themselves.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Applies `n` trims to `key`, read from ARGV as triples starting at index `i`:
-- kind ('MAXLEN' or 'MAXAGE'), mode ('~' or '='), value (entries or ms).
-- MAXAGE becomes MINID of the server's now minus the age. Returns the number
-- of entries removed.
local function apply_trims(key, i, n)
  local removed = 0
  for j = 0, n - 1 do
    local kind, mode, value = ARGV[i + 3 * j], ARGV[i + 3 * j + 1], ARGV[i + 3 * j + 2]
    if kind == 'MAXLEN' then
      removed = removed + redis.call('XTRIM', key, 'MAXLEN', mode, value)
    elseif kind == 'MAXAGE' then
      local minid = now_ms() - tonumber(value)
      if minid > 0 then
        removed = removed + redis.call('XTRIM', key, 'MINID', mode, string.format('%d', minid))
      end
    else
      return redis.error_reply('ERR unknown trim kind ' .. tostring(kind))
    end
  end
  return removed
end

-- Adds an entry with `fields` to `key`, then applies `n` trims read from
-- ARGV at index `i` (see apply_trims). A first trim by length goes inline
-- in the XADD, which saves a command. Returns the new id, or an error reply.
local function add_trimmed(key, i, n, fields)
  local id
  if n > 0 and ARGV[i] == 'MAXLEN' then
    id = redis.call('XADD', key, 'MAXLEN', ARGV[i + 1], ARGV[i + 2], '*', unpack(fields))
    i, n = i + 3, n - 1
  else
    id = redis.call('XADD', key, '*', unpack(fields))
  end
  local trimmed = apply_trims(key, i, n)
  if type(trimmed) == 'table' then
    return trimmed
  end
  return id
end

-- ARGV from index `i` to the end, as a list (the fields of an entry).
local function rest(i)
  local out = {}
  for j = i, #ARGV do
    out[#out + 1] = ARGV[j]
  end
  return out
end

-- The value of `name` in a reply given as a flat list of names and values
-- (XINFO), or nil.
local function field_of(list, name)
  for i = 1, #list, 2 do
    if list[i] == name then
      return list[i + 1]
    end
  end
  return nil
end

-- Whether the error reply of a redis.pcall means that a key or a group is
-- missing (NOGROUP, or XINFO's `ERR no such key`). The callers raise any
-- other error (a key of another type, a command or key the user's ACL
-- refuses) instead of taking it for a missing group.
local function missing(reply)
  return string.sub(reply.err, 1, 7) == 'NOGROUP'
    or string.find(reply.err, 'no such key', 1, true) ~= nil
end

-- Whether entry id is pending in group on source, and for fence when it is
-- not '': nil when so, else why not: {'not_pending'} (also for a missing
-- stream or group), {'owned_by', consumer}, or {'error', message} for any
-- other refusal (a key of another type, an ACL refusal).
local function refusal_to_settle(source, group, id, fence)
  local pending = redis.pcall('XPENDING', source, group, id, id, 1)
  if type(pending) == 'table' and pending.err and not missing(pending) then
    return {'error', pending.err}
  end
  if type(pending) ~= 'table' or pending.err or #pending == 0 then
    return {'not_pending'}
  end
  if fence ~= '' and pending[1][2] ~= fence then
    return {'owned_by', pending[1][2]}
  end
  return nil
end
