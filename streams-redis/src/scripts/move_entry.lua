-- Writes a new copy of a pending entry, then acknowledges (and optionally
-- deletes) the original, after checking that it is still pending, and
-- pending for the fencing consumer when one is given.
--
-- KEYS[1]: the source stream. KEYS[2]: the target stream or retry schedule.
-- ARGV[1]: group. ARGV[2]: entry id. ARGV[3]: fencing consumer ('' for none).
-- ARGV[4]: '1' to delete the source entry after acknowledging it.
-- ARGV[5]: 'stream' or 'schedule'.
-- ARGV[6]: for 'schedule', the delay in ms; ignored for 'stream'.
-- ARGV[7]: number of trims n applied to a target stream; ARGV[8 .. 7+3n]: trims.
-- Then the new entry's fields as name, value pairs.
--
-- Returns {'moved', new id or ''}, {'not_pending'} or {'owned_by', consumer}.
local source, target = KEYS[1], KEYS[2]
local group, id, fence = ARGV[1], ARGV[2], ARGV[3]

-- NOGROUP (no stream or no group) means the entry is not pending either.
local refused = refusal_to_settle(source, group, id, fence)
if refused and refused[1] == 'error' then
  return redis.error_reply(refused[2])
elseif refused then
  return refused
end

local n = tonumber(ARGV[7])
local fields = rest(8 + 3 * n)
local new_id = ''
if ARGV[5] == 'stream' then
  new_id = add_trimmed(target, 8, n, fields)
  if type(new_id) == 'table' then
    return new_id
  end
else
  -- The member carries where the entry came from, so two retries with equal
  -- fields stay two members; promote_due unpacks it.
  local member = {source, id}
  for _, v in ipairs(fields) do
    member[#member + 1] = v
  end
  redis.call('ZADD', target, now_ms() + tonumber(ARGV[6]), cmsgpack.pack(member))
end

redis.call('XACK', source, group, id)
if ARGV[4] == '1' then
  redis.call('XDEL', source, id)
end
return {'moved', new_id}
