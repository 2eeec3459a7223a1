"""Small stand-alone experiments that reproduce theory from the papers behind this library."""

import numpy as np


def jsonable(obj, digits: int | None = None):
  """``obj`` with arrays, NumPy scalars and tuples turned into JSON types; non-finite floats become None.

  ``digits``: round floats to that many decimals (stable files that compare equal across runs). An object with a
  ``to_json()`` method (a structured config entry, e.g. a landscape ``Objective``) is stored as what it returns.
  """
  if isinstance(obj, dict):
    return {str(k): jsonable(v, digits) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [jsonable(v, digits) for v in obj]
  if hasattr(obj, 'shape') and hasattr(obj, 'tolist'):  # NumPy and jax arrays.
    return jsonable(np.asarray(obj).tolist(), digits)
  if isinstance(obj, (float, np.floating)):
    if not np.isfinite(obj):
      return None
    return float(obj) if digits is None else round(float(obj), digits)
  if isinstance(obj, (np.integer, np.bool_)):
    return obj.item()
  if callable(getattr(obj, 'to_json', None)):
    return jsonable(obj.to_json(), digits)
  return obj
